/**
 * What the CORE tests share: a real config-center in-process (its own test harness), the SDK's
 * options for a fresh app, a logger that keeps the lines, and a TCP front that can make
 * config-center unreachable, silent or answer garbage without touching the service itself.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { call, type Json, startCenters } from "../../../services/config-center/test/harness.js";
import { newTerminalKey, type SdkLogger, type SdkOptions } from "../src/index.js";

export { call, type Json };

export type Center = Awaited<ReturnType<typeof startCenter>>;

/** One config-center replica on a fresh database (and Redis with `redis`). */
export async function startCenter(opts: { redis: boolean; env?: Record<string, string> }) {
  const centers = await startCenters(1, opts);
  const url = centers.urls[0]!;
  return {
    url,
    port: Number(new URL(url).port),
    redisPrefix: centers.redisPrefix,
    centers,
    /** Sets an item as an operator; returns config-center's answer. */
    async put(kind: string, app: string, env: string, key: string, value: unknown, extra: Record<string, unknown> = {}) {
      const r = await call(url, "PUT", `/config/v1/items/${kind}/${app || "_"}/${env || "_"}/${key}`, {
        role: "operator",
        body: { value, ...extra },
      });
      if (r.status !== 200) throw new Error(`put ${kind} ${key}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body as { version: number };
    },
    async remove(kind: string, app: string, env: string, key: string) {
      const r = await call(url, "DELETE", `/config/v1/items/${kind}/${app || "_"}/${env || "_"}/${key}`, { role: "operator", body: {} });
      if (r.status !== 200) throw new Error(`delete ${kind} ${key}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body as { version: number };
    },
    /** The app's instances as config-center shows them, newest first. */
    async instances(appId: string): Promise<Json[]> {
      const r = await call(url, "GET", `/config/v1/apps/${appId}/instances`, { role: "viewer" });
      return r.body.instances as Json[];
    },
    async admin(method: string, path: string, body?: unknown) {
      return call(url, method, path, { role: "admin", body });
    },
    close: () => centers.close(),
  };
}

export interface LogLine {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

/** A logger keeping every line (printed too with TEST_LOG_LEVEL=debug). */
export function memoryLog(): SdkLogger & { lines: LogLine[]; matching(re: RegExp): LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push({ level, msg, fields });
    if (process.env.TEST_LOG_LEVEL === "debug") console.log(`[sdk ${level}] ${msg}`);
  };
  return {
    lines,
    matching: (re) => lines.filter((l) => re.test(l.msg)),
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
  };
}

/** A key the terminal accepts (without one it warns that every command will be refused). */
export const terminalKey = newTerminalKey("test");

/** SDK options for a new app of its own (id and secret), retrying fast, with a logger that keeps its lines. */
export function appOptions(configUrl: string, extra: Partial<SdkOptions> = {}) {
  const log = memoryLog();
  const options: SdkOptions = {
    appId: `app-${randomBytes(4).toString("hex")}`,
    secret: `secret-${randomBytes(8).toString("hex")}`,
    configUrl,
    env: "uat",
    servicePort: 8080,
    terminalPort: 0,
    terminalKeys: [terminalKey.publicKeyEntry],
    hostName: "test-host",
    ip: "10.1.2.3",
    requestTimeoutMs: 1_000,
    startupTimeoutMs: 4_000,
    retryBaseMs: 100,
    retryMaxMs: 400,
    log,
    ...extra,
  };
  return { options, log };
}

export type FrontMode = "pass" | "refuse" | "silent" | "garbage";

/**
 * A TCP front to config-center: passes bytes through, or makes every new connection fail at once
 * (`refuse`), hang (`silent`), or get an HTML maintenance page (`garbage`).
 */
export async function startFront(targetPort: number) {
  let mode: FrontMode = "pass";
  let target = targetPort;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
  };
  const server = net.createServer((client) => {
    track(client);
    switch (mode) {
      case "refuse":
        client.destroy();
        return;
      case "silent":
        return;
      case "garbage":
        client.once("data", () => {
          const page = "<html><body>Service under maintenance</body></html>";
          client.end(`HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: ${page.length}\r\nconnection: close\r\n\r\n${page}`);
        });
        return;
      case "pass": {
        const upstream = net.connect(target, "127.0.0.1");
        track(upstream);
        client.pipe(upstream).pipe(client);
        client.on("close", () => upstream.destroy());
        upstream.on("close", () => client.destroy());
      }
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    /** New connections from now on; open ones are kept unless dropped. */
    set(m: FrontMode) {
      mode = m;
    },
    /** New connections go to another port (another replica) from now on. */
    retarget(port: number) {
      target = port;
    },
    dropConnections() {
      for (const s of sockets) s.destroy();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
