// The instances of bench/config-push.ts, in a process of their own: registers N instances of one
// app, holds their WebSockets (heartbeats, acknowledgements), records when each receives a round's
// change, and drives the start-up metadata load. Driven over IPC by bench/config-push.ts.
import { Agent, request } from "undici";
import WebSocket from "ws";

export type ClientCommand =
  | { cmd: "start"; url: string; token: string; count: number }
  | { cmd: "round"; round: number; startedAt: number; timeoutMs: number }
  /** Start-up metadata load against config-center, or against `url` (the floor server). */
  | { cmd: "metadata"; seconds: number; connections: number; url?: string }
  | { cmd: "stop" };

export type ClientReport =
  | {
      t: "ready";
      registered: number;
      connected: number;
      registerSeconds: number;
      connectSeconds: number;
      fdLimitHit: boolean;
      error?: string;
    }
  | { t: "round"; round: number; latenciesMs: number[] }
  | { t: "metadata"; requests: number; errors: number; seconds: number; latencyP99Ms: number };

const send = (m: ClientReport) => process.send!(m);

interface Client {
  id: string;
  ws: WebSocket;
}

const clients: Client[] = [];
/** Per round: when each instance received the change (epoch ms). */
const received = new Map<number, number[]>();
let url = "";
let token = "";

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function start(c: Extract<ClientCommand, { cmd: "start" }>): Promise<void> {
  url = c.url;
  token = c.token;
  const ids: string[] = [];
  let fdLimitHit = false;
  let error: string | undefined;
  const t0 = Date.now();
  await pool(
    Array.from({ length: c.count }, (_, i) => i),
    32,
    async (i) => {
      const r = await fetch(`${url}/config/v1/instances`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-config-token": token },
        body: JSON.stringify({
          env: "uat",
          hostName: `bench-${i}`,
          ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
          servicePort: 8080,
          sdkPort: 1818,
          labels: { shard: String(i % 10) },
        }),
      });
      if (r.status !== 201) throw new Error(`registration ${i}: ${r.status} ${await r.text()}`);
      ids.push(((await r.json()) as { instanceId: string }).instanceId);
    },
  );
  const registerSeconds = (Date.now() - t0) / 1000;
  const t1 = Date.now();
  await pool(ids, 200, async (id) => {
    try {
      clients.push(await connect(id));
    } catch (err) {
      const message = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      if (/EMFILE|ENFILE/.test(message)) fdLimitHit = true;
      error ??= message;
    }
  });
  const connectSeconds = (Date.now() - t1) / 1000;
  send({ t: "ready", registered: ids.length, connected: clients.length, registerSeconds, connectSeconds, fdLimitHit, error });
}

function connect(id: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}/config/v1/instances/${id}/socket?version=0`, {
      headers: { "x-config-token": token },
      perMessageDeflate: false,
    });
    let caughtUp = false;
    ws.on("message", (data: Buffer) => {
      const at = Date.now();
      const m = JSON.parse(data.toString()) as {
        t: string;
        version: number;
        catchUp?: boolean;
        changes?: Array<{ key: string; value?: { round?: number } }>;
      };
      if (m.t !== "changes") return;
      ws.send(`{"t":"ack","version":${m.version}}`);
      if (m.catchUp && !caughtUp) {
        caughtUp = true;
        // Heartbeats from the moment the socket is up, every 10 s as the SDK sends them: sockets opened
        // early in a long connection phase must not fall silent past HEARTBEAT_TIMEOUT_MS meanwhile.
        setInterval(() => ws.readyState === ws.OPEN && ws.send('{"t":"ping"}'), 10_000);
        resolve({ id, ws });
        return;
      }
      const round = m.changes?.find((x) => x.key === "bench.round")?.value?.round;
      if (round === undefined) return;
      const times = received.get(round) ?? [];
      received.set(round, times);
      times.push(at);
    });
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`handshake refused with ${res.statusCode}`)));
  });
}

async function round(c: Extract<ClientCommand, { cmd: "round" }>): Promise<void> {
  const deadline = c.startedAt + c.timeoutMs;
  while (Date.now() < deadline && (received.get(c.round)?.length ?? 0) < clients.length) await new Promise((r) => setTimeout(r, 20));
  send({ t: "round", round: c.round, latenciesMs: (received.get(c.round) ?? []).map((at) => at - c.startedAt) });
}

async function metadata(c: Extract<ClientCommand, { cmd: "metadata" }>): Promise<void> {
  const dispatcher = new Agent({ connections: c.connections, pipelining: 1 });
  let requests = 0;
  let errors = 0;
  const latencies: number[] = [];
  const end = Date.now() + c.seconds * 1000;
  await Promise.all(
    Array.from({ length: c.connections }, async (_, w) => {
      let i = w;
      while (Date.now() < end) {
        const cl = clients[i++ % clients.length]!;
        const t = performance.now();
        try {
          const r = await request(`${c.url ?? url}/config/v1/instances/${cl.id}/metadata`, {
            headers: { "x-config-token": token },
            dispatcher,
          });
          await r.body.arrayBuffer();
          if (r.statusCode === 200) requests++;
          else errors++;
        } catch {
          errors++;
        }
        latencies.push(performance.now() - t);
      }
    }),
  );
  await dispatcher.close();
  latencies.sort((a, b) => a - b);
  send({ t: "metadata", requests, errors, seconds: c.seconds, latencyP99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? 0 });
}

const commands: { [C in ClientCommand["cmd"]]: (c: Extract<ClientCommand, { cmd: C }>) => Promise<void> } = {
  start,
  round,
  metadata,
  stop: async () => process.exit(0),
};

process.on("message", (c: ClientCommand) => {
  (commands[c.cmd] as (c: ClientCommand) => Promise<void>)(c).catch((err) => {
    console.error(err);
    process.exit(1);
  });
});
