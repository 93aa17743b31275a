// The loan demo as the platform runs it: a real config-center (in-process, services/config-center's
// own test harness, real PostgreSQL and Redis) seeded as `make run` seeds it, and the demo app as a
// child process (`node --import tsx src/main.ts`), so start-up, exit codes and shutdown are the
// process's own. Terminal calls are signed as monitor-center and control-center sign them.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { newTerminalKey, signTerminalRequest } from "@opsplane/sdk";
import { eventually, freePort } from "@opsplane/testing";
import { call, type Json, keys, startCenters } from "../../../services/config-center/test/harness.js";
import { demoAppId, seedDemo } from "../src/seed.js";

export { call, type Json, keys };

export const appSecret = "loan-demo-test-secret";
export const appEnv = "dev";
const appDir = path.join(__dirname, "..");

/** The key pair a monitor signs terminal requests with; the apps trust its public half. */
export const terminalKey = newTerminalKey("monitor");

/**
 * config-center (one replica, Redis when asked) seeded as `make run` seeds it: the app, its
 * parameters, `databaseUrl` as middleware/loan-db behind db.main, and `rules` (none by default).
 */
export async function startPlatform(opts: {
  redis: boolean;
  databaseUrl?: string;
  rules?: Record<string, unknown>;
  env?: Record<string, string>;
}) {
  const centers = await startCenters(1, { redis: opts.redis, env: opts.env });
  const url = centers.urls[0]!;
  await seedDemo({
    configUrl: url,
    adminKey: keys.admin,
    secret: appSecret,
    env: appEnv,
    databaseUrl: opts.databaseUrl,
    rules: opts.rules ?? {},
  });
  return { ...centers, url };
}

/** Sets an item as an operator; throws unless config-center took it. */
export async function setItem(configUrl: string, kind: string, app: string, key: string, value: unknown, extra: object = {}) {
  const r = await call(configUrl, "PUT", `/config/v1/items/${kind}/${app}/_/${key}`, { role: "operator", body: { value, ...extra } });
  if (r.status !== 200) throw new Error(`PUT ${kind} ${key}: ${r.status} ${r.body.message}`);
  return r.body;
}

export async function deleteItem(configUrl: string, kind: string, app: string, key: string) {
  const r = await call(configUrl, "DELETE", `/config/v1/items/${kind}/${app}/_/${key}`, { role: "operator", body: {} });
  if (r.status !== 200) throw new Error(`DELETE ${kind} ${key}: ${r.status} ${r.body.message}`);
}

/** The demo's instances at config-center, newest first. */
export async function instancesOf(configUrl: string, state?: string): Promise<Json[]> {
  const r = await call(configUrl, "GET", `/config/v1/apps/${demoAppId}/instances${state ? `?state=${state}` : ""}`, { role: "viewer" });
  return r.body.instances;
}

export interface DemoApp {
  url: string;
  port: number;
  terminalUrl: string;
  terminalPort: number;
  proc: ChildProcess;
  /** Its output so far, one entry per line (pino JSON). */
  lines: string[];
  /** Resolves with how it ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Waits for a log line containing `text`. */
  logged(text: string, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the demo app against `configUrl` (`serving` waits until it serves); `env` overrides the defaults below. */
export async function startDemoApp(configUrl: string, env: Record<string, string> = {}): Promise<DemoApp> {
  const port = await freePort();
  const terminalPort = await freePort();
  const proc = spawn(process.execPath, ["--import", "tsx", path.join(appDir, "src", "main.ts")], {
    cwd: appDir,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      // The test's own DATABASE_URL is the server's admin database, not a loan book.
      DATABASE_URL: "",
      OPSPLANE_CONFIG_URL: configUrl,
      OPSPLANE_APP_ID: demoAppId,
      OPSPLANE_APP_SECRET: appSecret,
      OPSPLANE_ENV: appEnv,
      OPSPLANE_TERMINAL_PORT: String(terminalPort),
      OPSPLANE_TERMINAL_KEYS: terminalKey.publicKeyEntry,
      OPSPLANE_LOG_LEVEL: "info",
      OPSPLANE_REDIS_URL: "",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  for (const stream of [proc.stdout!, proc.stderr!]) {
    let rest = "";
    stream.on("data", (chunk: Buffer) => {
      const parts = (rest + chunk.toString()).split("\n");
      rest = parts.pop()!;
      lines.push(...parts);
      if (process.env.TEST_APP_OUTPUT) for (const l of parts) process.stderr.write(`[app ${port}] ${l}\n`);
    });
  }
  const exited = once(proc, "exit").then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const app: DemoApp = {
    url: `http://127.0.0.1:${port}`,
    port,
    terminalUrl: `http://127.0.0.1:${terminalPort}`,
    terminalPort,
    proc,
    lines,
    exited,
    logged: (text, timeoutMs = 30_000) => eventually(`the app to log "${text}"`, () => lines.find((l) => l.includes(text)), timeoutMs),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      return exited;
    },
  };
  return app;
}

/** Resolves once `app` answers /healthz; fails with its output if it exits first. */
export async function serving(starting: DemoApp | Promise<DemoApp>, timeoutMs = 60_000): Promise<DemoApp> {
  const app = await starting;
  await eventually(
    "the demo app to serve",
    async () => {
      if (app.proc.exitCode !== null) throw new Error(`it exited with ${app.proc.exitCode}:\n${app.lines.join("\n")}`);
      return (await fetch(`${app.url}/healthz`).catch(() => undefined))?.ok === true;
    },
    timeoutMs,
    100,
  );
  return app;
}

/** A JSON request to the app; the reply's body parsed, and its headers. */
export async function request(app: DemoApp, method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${app.url}${p}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Json;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { text };
  }
  return { status: res.status, body: json, headers: res.headers };
}

export const application = { applicant: "Li Lei", amount: 20_000, termMonths: 24, bankCode: "104100000004" };

/** A signed request to the app's terminal, as monitor-center or control-center sends it. */
export async function terminal(app: DemoApp, instanceId: string, method: "GET" | "POST", p: string, body?: unknown) {
  const text = body === undefined ? "" : JSON.stringify(body);
  const res = await fetch(`${app.terminalUrl}${p}`, {
    method,
    headers: {
      ...signTerminalRequest({ keyId: "monitor", privateKey: terminalKey.privateKeyPem, method, path: p, instanceId, body: text }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : text,
  });
  return { status: res.status, body: (await res.json()) as Json };
}

/** The id config-center gave the instance serving on `app.port`. */
export async function instanceIdOf(configUrl: string, app: DemoApp): Promise<string> {
  return eventually("the instance at config-center", async () => {
    const mine = (await instancesOf(configUrl)).find((i) => i.servicePort === app.port);
    return mine?.instanceId as string | undefined;
  });
}
