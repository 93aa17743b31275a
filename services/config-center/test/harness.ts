import { type RunningService, sha256Hex, startService } from "@opsplane/platform";
import { createTestDatabase, eventually, testRedis } from "@opsplane/testing";
import pg from "pg";
import WebSocket from "ws";
import type { ConfigCenterEnv } from "../src/config.js";
import { definition } from "../src/service.js";

export const keys = {
  viewer: "viewer-key-0123456789abcdef",
  operator: "operator-key-0123456789abcdef",
  admin: "admin-key-0123456789abcdef",
};
export type Role = keyof typeof keys;
/** AUTH_API_KEYS giving each of `keys` its role. */
export const authApiKeys = Object.entries(keys)
  .map(([role, key]) => `${role}:${role}:${sha256Hex(key)}`)
  .join(",");

/** Two keys, so rotation can be tested: k1 seals until SECRET_ACTIVE_KEY_ID says k2. */
export const secretKeys = `k1:${Buffer.alloc(32, 7).toString("base64")},k2:${Buffer.alloc(32, 9).toString("base64")}`;

/** config-center replicas sharing one fresh database (and, with `redis`, one Redis), as in a scaled deployment. */
export async function startCenters(count: number, opts: { redis: boolean; env?: Record<string, string> }) {
  const db = await createTestDatabase();
  const redis = opts.redis ? testRedis() : undefined;
  const env = {
    DATABASE_URL: db.url,
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    REDIS_URL: redis?.url ?? "",
    CONFIG_REDIS_PREFIX: redis?.prefix ?? "config-center:",
    AUTH_API_KEYS: authApiKeys,
    SECRET_KEYS: secretKeys,
    PUSH_CYCLE_MS: "50",
    HEARTBEAT_FLUSH_MS: "100",
    // The flows' tests start apps admitted on first use in prod; app-boundaries.test.ts tests the grants.
    DEFAULT_APP_ENVIRONMENTS: "dev,test,sit,uat,prod",
    ...opts.env,
  };
  const centers: Array<RunningService<ConfigCenterEnv>> = [];
  /** Starts one more replica on the same database, with `extra` variables. */
  const addReplica = async (extra: Record<string, string> = {}) => {
    const center = await startService(definition, { ...env, REPLICA_ID: `replica-${centers.length}`, ...extra });
    centers.push(center);
    return center;
  };
  for (let i = 0; i < count; i++) await addReplica();
  return {
    centers,
    addReplica,
    urls: centers.map((c) => c.url),
    db,
    redisPrefix: redis?.prefix,
    async close() {
      for (const c of centers) await c.close();
      await db.drop();
    },
  };
}

/** A client on the service's own schema, to check what it wrote. */
export async function centerDb(url: string): Promise<pg.Client> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  await db.query("SET search_path = config_center");
  return db;
}

/** JSON as the tests read it: its shape is checked by the assertions, not by the compiler. */
// biome-ignore lint/suspicious/noExplicitAny: replies are read loosely; the assertions check their shape
export type Json = any;

export interface Reply {
  status: number;
  body: Record<string, Json>;
  headers: Headers;
}

/** A REST call as a person with an API key of `role`, or as an app with `token`. */
export async function call(
  base: string,
  method: string,
  path: string,
  opts: { body?: unknown; role?: Role; token?: string; raw?: string | Blob; contentType?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.role) headers.authorization = `Bearer ${keys[opts.role]}`;
  if (opts.token) headers["x-config-token"] = opts.token;
  if (opts.body !== undefined || opts.raw !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body)),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {}, headers: res.headers };
}

/** A managed app's instance the way the SDK drives it: token, registration, metadata, socket. */
export class Instance {
  readonly inbox: Array<Record<string, Json>> = [];
  ws: WebSocket | undefined;
  /** The version the instance is up to date with: from its metadata, then from every change message. */
  version = 0;
  closed: { code: number; reason: string } | undefined;
  autoAck = true;
  /** Heartbeats, as the SDK sends them; `stopHeartbeats` lets the server find the instance silent. */
  private heartbeats: NodeJS.Timeout | undefined;

  private constructor(
    readonly base: string,
    readonly token: string,
    readonly instanceId: string,
  ) {}

  static async start(
    base: string,
    app: { appId: string; secret: string },
    registration: Record<string, unknown> = {},
  ): Promise<Instance & { metadata: Record<string, Json> }> {
    const token = await call(base, "POST", "/config/v1/token", { body: app });
    if (token.status !== 200) throw new Error(`token refused: ${token.status} ${token.body.message}`);
    const reg = await call(base, "POST", "/config/v1/instances", {
      token: token.body.token,
      body: { env: "prod", hostName: "host-1", ip: "10.0.0.1", servicePort: 8080, sdkPort: 1818, ...registration },
    });
    if (reg.status !== 201) throw new Error(`registration refused: ${reg.status} ${reg.body.message}`);
    const instance = new Instance(base, token.body.token, reg.body.instanceId) as Instance & { metadata: Record<string, Json> };
    instance.metadata = await instance.fetchMetadata();
    instance.version = instance.metadata.version;
    await instance.connect();
    return instance;
  }

  async fetchMetadata(): Promise<Record<string, Json>> {
    const m = await call(this.base, "GET", `/config/v1/instances/${this.instanceId}/metadata`, { token: this.token });
    if (m.status !== 200) throw new Error(`metadata refused: ${m.status} ${m.body.message}`);
    return m.body;
  }

  /** Opens the socket, asking for what changed after the version it has; resolves when the catch-up arrived. */
  async connect(base = this.base): Promise<Record<string, Json>> {
    this.closed = undefined;
    const seen = this.inbox.length;
    const ws = new WebSocket(`${base.replace("http", "ws")}/config/v1/instances/${this.instanceId}/socket?version=${this.version}`, {
      headers: { "x-config-token": this.token },
    });
    this.ws = ws;
    ws.on("message", (data) => {
      const m = JSON.parse(String(data)) as Record<string, Json>;
      this.inbox.push(m);
      if (m.t === "changes") {
        this.version = Math.max(this.version, m.version);
        if (this.autoAck) ws.send(JSON.stringify({ t: "ack", version: m.version }));
      }
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: String(reason) };
      this.stopHeartbeats();
    });
    this.stopHeartbeats();
    this.heartbeats = setInterval(() => ws.readyState === ws.OPEN && ws.send('{"t":"ping"}'), 500);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`handshake refused with ${res.statusCode}`)));
    });
    return eventually("the catch-up", () => this.inbox.slice(seen).find((m) => m.t === "changes" && m.catchUp === true));
  }

  send(message: unknown): void {
    this.ws!.send(typeof message === "string" ? message : JSON.stringify(message));
  }

  next(what: string, match: (m: Record<string, Json>) => boolean): Promise<Record<string, Json>> {
    return eventually(what, () => this.inbox.find(match));
  }

  /** The value of `kind`/`key` in the latest change message that carried it. */
  latest(kind: string, key: string): Record<string, Json> | undefined {
    for (let i = this.inbox.length - 1; i >= 0; i--) {
      const m = this.inbox[i]!;
      if (m.t !== "changes") continue;
      const c = (m.changes as Array<Record<string, Json>>).find((x) => x.kind === kind && x.key === key);
      if (c) return c;
    }
    return undefined;
  }

  /** Waits until a change message brings `kind`/`key` with a value matching `match`. */
  until(kind: string, key: string, match: (c: Record<string, Json>) => boolean): Promise<Record<string, Json>> {
    return eventually(`${kind} ${key} to arrive`, () => {
      const c = this.latest(kind, key);
      return c && match(c) ? c : undefined;
    });
  }

  stopHeartbeats(): void {
    clearInterval(this.heartbeats);
  }

  close(): void {
    this.stopHeartbeats();
    this.ws?.close();
  }

  async whenClosed(): Promise<{ code: number; reason: string }> {
    return eventually("the socket to close", () => this.closed);
  }
}
