// config-center: change push to many connected instances, and start-up metadata throughput.
//  - One config-center process (single node, postgres bus; Redis when REDIS_URL is set) and, in
//    a separate process (bench/config-push-clients.ts), BENCH_INSTANCES instances of one app:
//    each registered, with its WebSocket open, heartbeating and acknowledging.
//  - BENCH_ROUNDS times, an operator changes one technical parameter all instances listen to;
//    push latency = PUT sent → the instance's socket receives the change (one machine, one clock),
//    so it includes the commit, the bus, the scan cycle (PUSH_CYCLE_MS) and the fan-out.
//  - Start-up metadata: GET /config/v1/instances/{id}/metadata for BENCH_METADATA_SECONDS with
//    BENCH_CONNECTIONS keep-alive connections from the client process, beside the same client
//    against a bare node:http server answering the same bytes (the floor of this machine).
// Prints one JSON object.   npx tsx scripts/with-test-deps.ts npx tsx bench/config-push.ts
import { type ChildProcess, fork, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import path from "node:path";
import { sha256Hex } from "@opsplane/platform";
import { createTestDatabase, eventually, freePort, processUsage } from "@opsplane/testing";
import type { ClientCommand, ClientReport } from "./config-push-clients.js";

const INSTANCES = Number(process.env.BENCH_INSTANCES ?? 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const METADATA_SECONDS = Number(process.env.BENCH_METADATA_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const ADMIN_KEY = "bench-admin-key-0123456789";
const centerDir = path.join(__dirname, "..", "services", "config-center");

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
const round1 = (n: number) => Math.round(n * 10) / 10;

async function startCenter(databaseUrl: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(process.execPath, ["--import", "tsx", path.join(centerDir, "src", "main.ts")], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      REDIS_URL: process.env.REDIS_URL ?? "",
      CONFIG_REDIS_PREFIX: `bench:${process.pid}:`,
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: "warn",
      DATABASE_POOL_MAX: "20",
      AUTH_API_KEYS: `bench:admin:${sha256Hex(ADMIN_KEY)}`,
      SECRET_KEYS: `k1:${Buffer.alloc(32, 3).toString("base64")}`,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  await eventually("config-center to answer", async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.ok === true, 60_000);
  return { url, proc };
}

/** A bare node:http server answering every request with `body`: what this machine does without config-center. */
async function startFloor(body: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const script = `require("node:http").createServer((q, s) => { s.writeHead(200, { "content-type": "application/json" }); s.end(process.env.BODY); }).listen(${port}, "127.0.0.1")`;
  const proc = spawn(process.execPath, ["-e", script], { env: { ...process.env, BODY: body }, stdio: "ignore" });
  const url = `http://127.0.0.1:${port}`;
  await eventually("the floor server", async () => (await fetch(url).catch(() => undefined))?.ok === true);
  return { url, proc };
}

async function api(url: string, method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${url}${p}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** Configuration a real app would start with: a database through a resource with a secret, a dictionary, a rule. */
async function seed(url: string): Promise<void> {
  await api(url, "PUT", "/config/v1/resources/middleware/bench-db", {
    type: "postgresql",
    config: { host: "db.internal", port: 5432, database: "bench" },
    secrets: { password: "bench-password" },
  });
  await api(url, "PUT", "/config/v1/items/technical/bench/uat/datasource", {
    value: { db: { $ref: "middleware/bench-db" }, poolMax: 20 },
  });
  await api(url, "PUT", "/config/v1/items/business/_/_/dict.channels", {
    value: Array.from({ length: 100 }, (_, i) => ({ code: `C${i}`, name: `channel ${i}` })),
    category: "dictionary",
    startup: true,
  });
  await api(url, "PUT", "/config/v1/items/governance/bench/_/rate-limit/bench.apply", { value: { tps: 500, concurrency: 50 } });
}

function clientProcess(): { proc: ChildProcess; ask(c: ClientCommand): Promise<ClientReport> } {
  const proc = fork(path.join(__dirname, "config-push-clients.ts"), [], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let waiting: ((r: ClientReport) => void) | undefined;
  proc.on("message", (r: ClientReport) => waiting?.(r));
  proc.on("exit", (code) => {
    if (code) throw new Error(`the client process exited with ${code}`);
  });
  return {
    proc,
    ask: (c) =>
      new Promise((resolve) => {
        waiting = resolve;
        proc.send(c);
      }),
  };
}

function fdLimit(): number {
  const line = readFileSync("/proc/self/limits", "utf8")
    .split("\n")
    .find((l) => l.startsWith("Max open files"));
  return Number(line?.split(/\s+/)[3]);
}

async function main() {
  const db = await createTestDatabase();
  const center = await startCenter(db.url);
  const clients = clientProcess();
  let floor: { url: string; proc: ChildProcess } | undefined;
  try {
    await seed(center.url);
    const { token } = (await api(center.url, "POST", "/config/v1/token", { appId: "bench", secret: "bench-secret-0123" })) as {
      token: string;
    };
    const ready = (await clients.ask({ cmd: "start", url: center.url, token, count: INSTANCES })) as Extract<ClientReport, { t: "ready" }>;

    const latencies: number[] = [];
    const deliveredPerRound: number[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      const startedAt = Date.now();
      await api(center.url, "PUT", "/config/v1/items/technical/bench/_/bench.round", { value: { round: r } });
      const report = (await clients.ask({ cmd: "round", round: r, startedAt, timeoutMs: 30_000 })) as Extract<ClientReport, { t: "round" }>;
      deliveredPerRound.push(report.latenciesMs.length);
      latencies.push(...report.latenciesMs);
      await new Promise((res) => setTimeout(res, 1_000));
    }
    latencies.sort((a, b) => a - b);
    const rssAfterPush = (await processUsage(center.proc.pid!)).rssBytes;

    const metadata = (await clients.ask({ cmd: "metadata", seconds: METADATA_SECONDS, connections: CONNECTIONS })) as Extract<
      ClientReport,
      { t: "metadata" }
    >;
    const rssAfterMetadata = (await processUsage(center.proc.pid!)).rssBytes;
    const sampleId = (await api(center.url, "GET", "/config/v1/apps/bench/instances?limit=1")) as {
      instances: Array<{ instanceId: string }>;
    };
    const body = await (
      await fetch(`${center.url}/config/v1/instances/${sampleId.instances[0]!.instanceId}/metadata`, {
        headers: { "x-config-token": token },
      })
    ).text();
    floor = await startFloor(body);
    const floorRun = (await clients.ask({
      cmd: "metadata",
      seconds: METADATA_SECONDS,
      connections: CONNECTIONS,
      url: floor.url,
    })) as Extract<ClientReport, { t: "metadata" }>;

    const metadataRps = Math.round(metadata.requests / metadata.seconds);
    const floorRps = Math.round(floorRun.requests / floorRun.seconds);
    console.log(
      JSON.stringify(
        {
          bench: "config-push",
          cpus: cpus().length,
          loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
          fdLimit: fdLimit(),
          redis: Boolean(process.env.REDIS_URL),
          instances: ready.connected,
          requestedInstances: INSTANCES,
          registerSeconds: round1(ready.registerSeconds),
          connectSeconds: round1(ready.connectSeconds),
          connectError: ready.error ?? null,
          rounds: ROUNDS,
          delivered: Math.min(...deliveredPerRound),
          deliveredPerRound,
          pushP50Ms: percentile(latencies, 0.5),
          pushP99Ms: percentile(latencies, 0.99),
          pushMaxMs: latencies[latencies.length - 1] ?? Number.NaN,
          metadataRps,
          metadataP99Ms: round1(metadata.latencyP99Ms),
          metadataErrors: metadata.errors,
          metadataBytes: body.length,
          metadataFloorRps: floorRps,
          metadataVsFloor: Math.round((metadataRps / floorRps) * 100) / 100,
          serverRssMiB: Math.round(Math.max(rssAfterPush, rssAfterMetadata) / 1024 / 1024),
          target: "10,000 instances all receive a change with p99 < 1 s; 5,000 metadata requests/s",
        },
        null,
        2,
      ),
    );
  } finally {
    clients.proc.kill();
    floor?.proc.kill();
    center.proc.kill("SIGTERM");
    await new Promise((r) => center.proc.once("exit", r));
    await db.drop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
