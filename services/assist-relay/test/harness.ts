import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { type RunningService, sha256Hex, startService } from "@opsplane/platform";
import { createTestDatabase, eventually, freePort, testRedis } from "@opsplane/testing";
import WebSocket from "ws";
import type { AssistEnv } from "../src/config.js";
import { definition } from "../src/service.js";

export const operatorOrigin = "http://operator.example";
export const developerKey = "dev-key-0123456789abcdef";
export const otherDeveloperKey = "dev2-key-0123456789abcdef";
export const handlerKey = "handler-key-0123456789abcdef";

/** Relay replicas sharing one fresh database and (with `redis`) one Redis, as in a scaled deployment. */
export async function startRelays(
  count: number,
  opts: {
    redis: boolean;
    env?: Record<string, string>;
    origins?: string[];
    /** The relays reach the database at this URL instead (through a proxy a test can cut). */
    databaseUrl?: (url: string) => string;
  },
) {
  const db = await createTestDatabase();
  const redis = opts.redis ? testRedis() : undefined;
  const env = {
    DATABASE_URL: opts.databaseUrl ? opts.databaseUrl(db.url) : db.url,
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "silent",
    REDIS_URL: redis?.url ?? "",
    ASSIST_REDIS_PREFIX: redis?.prefix ?? "assist:",
    ASSIST_ALLOWED_ORIGINS: [operatorOrigin, ...(opts.origins ?? [])].join(","),
    AUTH_API_KEYS: [
      `dev:viewer:${sha256Hex(developerKey)}`,
      `dev2:viewer:${sha256Hex(otherDeveloperKey)}`,
      `handler:operator:${sha256Hex(handlerKey)}`,
    ].join(","),
    ...opts.env,
  };
  const relays: Array<RunningService<AssistEnv>> = [];
  const spawned: ChildProcess[] = [];
  for (let i = 0; i < count; i++) relays.push(await startService(definition, env));
  return {
    relays,
    db,
    /** Stops replica `i` gracefully (what SIGTERM does) and starts a new one on the same port: a restart, or a deploy. */
    async restart(i: number) {
      const port = new URL(relays[i]!.url).port;
      await relays[i]!.close();
      relays[i] = await startService(definition, { ...env, PORT: port });
    },
    /** One more replica as a process of its own, to be killed as a crash kills it (no close handler runs). */
    async spawn(): Promise<{ url: string; process: ChildProcess }> {
      const port = await freePort();
      const main = path.join(__dirname, "..", "dist", "main.js");
      const child = spawn(process.execPath, [main], { env: { PATH: process.env.PATH, ...env, PORT: String(port) }, stdio: "ignore" });
      spawned.push(child);
      const url = `http://127.0.0.1:${port}`;
      await eventually("the spawned relay ready", async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.ok, 30_000, 100);
      return { url, process: child };
    },
    async close() {
      for (const child of spawned) child.kill("SIGKILL");
      for (const r of relays) await r.close();
      await db.drop();
    },
  };
}

export async function call(base: string, method: string, path: string, opts: { body?: unknown; headers?: Record<string, string> } = {}) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { ...(opts.body === undefined ? {} : { "content-type": "application/json" }), ...opts.headers },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as Record<string, unknown> & { message?: string } };
}

export const asDeveloper = (key = developerKey) => ({ authorization: `Bearer ${key}` });

/** A WebSocket client that keeps every message it receives, to wait for one with `next`. */
export class Client {
  readonly inbox: Array<Record<string, unknown>> = [];
  /** How the relay closed the socket, once it has. */
  closed: { code: number; reason: string } | undefined;
  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => this.inbox.push(JSON.parse(String(data)) as Record<string, unknown>));
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: String(reason) };
    });
  }

  static async open(url: string, origin?: string, opts: { autoPong?: boolean } = {}): Promise<Client> {
    // autoPong false: a peer that stopped answering (its network dropped) while its socket looks open.
    const ws = new WebSocket(url, { headers: origin ? { origin } : {}, autoPong: opts.autoPong ?? true });
    const client = new Client(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`handshake refused with ${res.statusCode}`)));
    });
    return client;
  }

  send(message: unknown): void {
    this.ws.send(typeof message === "string" ? message : JSON.stringify(message));
  }

  next(what: string, match: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    return eventually(what, () => this.inbox.find(match));
  }

  close(): void {
    this.ws.close();
  }
}

/**
 * Opens a session as the widget would and connects its socket; with `join`, the default developer
 * enters its key too (and may then read its recording while it runs).
 */
export async function openWidget(base: string, opts: { join?: boolean } = {}) {
  const opened = await call(base, "POST", "/assist/sessions", {
    body: { pageUrl: `${operatorOrigin}/orders` },
    headers: { origin: operatorOrigin },
  });
  if (opened.status !== 201) throw new Error(`session not opened: ${opened.status} ${opened.body.message}`);
  const { sessionId, widgetToken, key } = opened.body as { sessionId: string; widgetToken: string; key: string };
  const widget = await widgetSocket(base, sessionId, widgetToken);
  if (opts.join) await join(base, key);
  return { sessionId, widgetToken, key, widget };
}

/** Opens a widget socket for a session as the page does: a single-use ticket bought with the session token, then the socket. */
export async function widgetSocket(
  base: string,
  sessionId: string,
  widgetToken: string,
  opts: { origin?: string; autoPong?: boolean } = {},
) {
  const origin = opts.origin ?? operatorOrigin;
  const ticket = await call(base, "POST", `/assist/sessions/${sessionId}/widget-ticket`, {
    headers: { origin: operatorOrigin, "x-assist-token": widgetToken },
  });
  if (ticket.status !== 200) throw new Error(`no widget ticket: ${ticket.status} ${ticket.body.message}`);
  return Client.open(`${base.replace("http", "ws")}/assist/ws/widget?ticket=${ticket.body.ticket}`, origin, { autoPong: opts.autoPong });
}

/** Redeems the key as a developer: they have joined the session; returns the ticket for its developer socket. */
async function join(base: string, key: string, apiKey = developerKey): Promise<string> {
  const connected = await call(base, "POST", "/assist/connect", { body: { key }, headers: asDeveloper(apiKey) });
  if (connected.status !== 200) throw new Error(`not connected: ${connected.status} ${connected.body.message}`);
  return String(connected.body.ticket);
}

/** Redeems the key as a developer and connects the developer socket. */
export async function connectDeveloper(base: string, key: string, apiKey = developerKey) {
  return Client.open(`${base.replace("http", "ws")}/assist/ws/developer?ticket=${await join(base, key, apiKey)}`);
}
