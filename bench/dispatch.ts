// callback-dispatcher: callbacks/s and the latency it adds, against nginx proxy_pass on the same
// machine in the same run. Four targets, each in its own process, receive the same 300-byte JSON
// callback: the upstream directly (baseline), nginx -> upstream, dispatcher (declarative JSON-path
// extractor), dispatcher (script extractor in the sandbox). BENCH_REGISTERED_SHARE (default 0.1) of the
// callbacks carry an id a test environment registered (-> sit), the rest go to production; both
// environments point at the same upstream. Decisions are recorded as in production (default config).
// Per target: a throughput phase (CONCURRENCY requests in flight for SECONDS) and a latency phase
// (LATENCY_CONCURRENCY in flight); "added" latency is the target's percentile minus the baseline's.
// Needs DATABASE_URL (REDIS_URL optional: the registry then lives in Redis) and a built tree (`npx tsc -b`).
//   DATABASE_URL=postgres://… npx tsx bench/dispatch.ts
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { sha256Hex } from "@opsplane/platform";
import { createTestDatabase, freePort } from "@opsplane/testing";
import { Pool } from "undici";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const LATENCY_CONCURRENCY = Number(process.env.BENCH_LATENCY_CONCURRENCY ?? 4);
const NGINX = process.env.NGINX_BIN ?? "/usr/sbin/nginx";
const IDS = 1000;
/** Share of callbacks whose id a test environment registered; the rest are production's (the bulk of real traffic). */
const REGISTERED_SHARE = Number(process.env.BENCH_REGISTERED_SHARE ?? 0.1);
const root = path.join(__dirname, "..");
const operatorKey = "bench-operator-key-0123456789";

const children: ChildProcess[] = [];
function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  return child;
}

async function waitFor(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`${url} did not answer`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const upstreamSource = `
const http = require("node:http");
http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => { res.writeHead(200, { "content-type": "application/json" }); res.end('{"code":"SUCCESS"}'); });
}).listen(Number(process.env.PORT), "127.0.0.1");`;

async function startNginx(port: number, upstreamPort: number): Promise<string> {
  const prefix = await mkdtemp(path.join(tmpdir(), "bench-nginx-"));
  await writeFile(
    path.join(prefix, "nginx.conf"),
    `worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`,
  );
  start(NGINX, ["-p", prefix, "-c", path.join(prefix, "nginx.conf")]);
  return prefix;
}

/** CPU seconds (user + system) used so far by these processes and their children (Linux /proc). */
async function cpuSeconds(pids: number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    const children = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
    const kids = children.split(" ").filter(Boolean).map(Number);
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
    if (kids.length) ticks += (await cpuSeconds(kids)) * 100;
  }
  return ticks / 100; // USER_HZ
}

interface Run {
  perSecond: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU time the measured target (proxy, or the upstream for "direct") used per callback, in µs. */
  cpuMicrosPerCallback?: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Keeps `concurrency` requests in flight for `seconds`; returns rate and latency percentiles (ms). */
async function load(
  origin: string,
  pathFor: (i: number) => string,
  body: (i: number) => string,
  concurrency: number,
  seconds: number,
): Promise<Run> {
  const pool = new Pool(origin, { connections: concurrency });
  const latencies: number[] = [];
  let errors = 0;
  let i = 0;
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const n = i++;
      const t0 = performance.now();
      try {
        const res = await pool.request({
          method: "POST",
          path: pathFor(n),
          headers: { "content-type": "application/json" },
          body: body(n),
        });
        await res.body.dump();
        if (res.statusCode !== 200) errors++;
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    perSecond: Math.round(latencies.length / elapsed),
    p50: round(percentile(latencies, 50)),
    p99: round(percentile(latencies, 99)),
    errors,
  };
}

async function main(): Promise<void> {
  const db = await createTestDatabase();
  const [upstreamPort, nginxPort, dispatcherPort] = await Promise.all([freePort(), freePort(), freePort()]);
  let nginxPrefix: string | undefined;
  try {
    const upstreamProc = start(process.execPath, ["-e", upstreamSource], { PORT: String(upstreamPort) });
    nginxPrefix = await startNginx(nginxPort, upstreamPort);
    const nginxProc = children.at(-1)!;
    const dispatcherProc = start(
      process.execPath,
      [
        ...(process.env.BENCH_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_PROF] : []),
        ...(process.env.BENCH_PERF ? ["--perf-basic-prof"] : []),
        path.join(root, "services/callback-dispatcher/dist/main.js"),
      ],
      {
        PORT: String(dispatcherPort),
        HOST: "127.0.0.1",
        DATABASE_URL: db.url,
        LOG_LEVEL: "warn",
        AUTH_API_KEYS: `bench:operator:${sha256Hex(operatorKey)}`,
        REDIS_KEY_PREFIX: `bench:${process.pid}:`,
      },
    );
    const dispatcher = `http://127.0.0.1:${dispatcherPort}`;
    const upstream = `http://127.0.0.1:${upstreamPort}`;
    const nginx = `http://127.0.0.1:${nginxPort}`;
    await Promise.all([waitFor(`${dispatcher}/readyz`), waitFor(`${nginx}/`), waitFor(`${upstream}/`)]);

    const api = async (method: string, p: string, body: unknown) => {
      const res = await fetch(`${dispatcher}${p}`, {
        method,
        headers: { authorization: `Bearer ${operatorKey}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
    };
    await api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: upstream, production: true });
    await api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: upstream });
    const interfaceSide = { pattern: "/api/pay", id: { kind: "json", expr: "orderNo" } };
    await api("PUT", "/_dispatcher/v1/rules/bench-json", {
      interface: interfaceSide,
      callback: { pattern: "/notify/json/**", id: { kind: "json", expr: "data.out_trade_no" } },
      ttlSeconds: 3600,
    });
    await api("PUT", "/_dispatcher/v1/rules/bench-script", {
      interface: interfaceSide,
      callback: {
        pattern: "/notify/script/**",
        id: { kind: "script", expr: "function extract(msg) { return JSON.parse(msg.body).data.out_trade_no; }" },
        sample: { path: "/notify/script/x", body: '{"data":{"out_trade_no":"S1"}}', expectId: "S1" },
      },
      ttlSeconds: 3600,
    });
    for (const rule of ["bench-json", "bench-script"])
      await api("POST", "/_dispatcher/v1/registrations", {
        env: "sit",
        registrations: Array.from({ length: IDS }, (_, i) => ({ rule, id: `T-${i}` })),
      });

    const pad = "x".repeat(200);
    const every = Math.max(1, Math.round(1 / REGISTERED_SHARE));
    const body = (i: number) =>
      JSON.stringify({ data: { out_trade_no: i % every === 0 ? `T-${i % IDS}` : `P-${i}`, trade_status: "TRADE_SUCCESS", pad } });
    // Every target gets the same load: same concurrency, same keep-alive client pool, the same warm-up.
    // The load generator is this process, never the proxy's (it would steal the proxy's event loop).
    const targets: Array<[string, string, string, number]> = [
      ["direct", upstream, "/notify/json/pay", upstreamProc.pid!],
      ["nginx", nginx, "/notify/json/pay", nginxProc.pid!],
      ["dispatcherDeclarative", dispatcher, "/notify/json/pay", dispatcherProc.pid!],
      ["dispatcherScript", dispatcher, "/notify/script/pay", dispatcherProc.pid!],
    ];
    const only = process.env.BENCH_TARGETS?.split(","); // e.g. "direct,dispatcherDeclarative" while profiling
    const results: Record<string, { throughput: Run; latency: Run }> = {};
    for (const [name, origin, p, pid] of targets) {
      if (only && name !== "direct" && !only.includes(name)) continue;
      await load(origin, () => p, body, CONCURRENCY, 1); // warm-up: JIT, pools, sandbox
      const cpu0 = await cpuSeconds([pid]);
      const throughput = await load(origin, () => p, body, CONCURRENCY, SECONDS);
      throughput.cpuMicrosPerCallback = Math.round((((await cpuSeconds([pid])) - cpu0) * 1e6) / (throughput.perSecond * SECONDS));
      const latency = await load(origin, () => p, body, LATENCY_CONCURRENCY, SECONDS);
      results[name] = { throughput, latency };
    }
    const base = results.direct!.latency;
    const added = (r: Run) => ({ p50: Math.round((r.p50 - base.p50) * 1000) / 1000, p99: Math.round((r.p99 - base.p99) * 1000) / 1000 });
    const summary = Object.fromEntries(
      Object.entries(results).map(([name, r]) => [
        name,
        {
          callbacksPerSecond: r.throughput.perSecond,
          cpuMicrosPerCallback: r.throughput.cpuMicrosPerCallback,
          throughputP99Ms: r.throughput.p99,
          errors: r.throughput.errors + r.latency.errors,
          latencyMs: { p50: r.latency.p50, p99: r.latency.p99 },
          ...(name === "direct" ? {} : { addedMs: added(r.latency) }),
        },
      ]),
    );
    const declarative = results.dispatcherDeclarative ?? results.direct!;
    console.log(
      JSON.stringify(
        {
          bench: "callback-dispatcher",
          cores: (await import("node:os")).availableParallelism(),
          loadAverage: (await import("node:os")).loadavg().map((x) => Math.round(x * 100) / 100),
          registry: process.env.REDIS_URL ? "redis" : "memory",
          registeredShare: 1 / every,
          seconds: SECONDS,
          concurrency: CONCURRENCY,
          latencyConcurrency: LATENCY_CONCURRENCY,
          bodyBytes: Buffer.byteLength(body(0)),
          results: summary,
          target: {
            callbacksPerSecond: 5000,
            addedP99Ms: 2,
            met: declarative.throughput.perSecond >= 5000 && added(declarative.latency).p99 < 2,
          },
        },
        null,
        2,
      ),
    );
  } finally {
    for (const c of children) c.kill("SIGTERM");
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
    if (nginxPrefix) await rm(nginxPrefix, { recursive: true, force: true });
    await db.drop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
