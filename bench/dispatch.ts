// callback-dispatcher: callbacks/s and the latency it adds, against nginx proxy_pass on the same
// machine in the same run, measured with native tools so the measuring side leaves the CPU to the
// system under test: `wrk` (one thread, keep-alive, a Lua script that builds each POST body) is the
// load generator, and the upstream is nginx answering `return 200 '{"code":"SUCCESS"}'` (its own
// process, one worker). Five targets receive the same ~300-byte JSON callback: the upstream directly
// (baseline), nginx proxy_pass -> upstream (its own process, one worker), the Node forwarding floor
// (bench/forwarder-floor.ts: node:http and the dispatcher's forwarder, nothing else, so every run shows
// what any Node forwarder costs on the machine at hand), dispatcher (declarative JSON-path extractor),
// dispatcher (script extractor in the sandbox). BENCH_REGISTERED_SHARE (default
// 0.1) of the callbacks carry an id a test environment registered (-> sit), the rest a fresh id
// (-> production, not_registered); both environments point at the same upstream. sit has idPatterns
// {"*": "T-[0-9]+"}, as the dispatcher's README advises where test ids can be told apart, so production's
// ids are routed without a registry lookup; BENCH_ID_PATTERNS=0 gives sit none (every callback looked up). The dispatcher runs
// its default configuration: rule match, id extraction, registry lookup (Redis with REDIS_URL, else
// memory), every decision recorded in PostgreSQL, the exact bytes forwarded.
// Per target: warm-up (BENCH_WARMUP_SECONDS, 5), throughput phases (CONCURRENCY connections, each with one
// request in flight, for SECONDS: callbacks/s at saturation, CPU per callback from /proc; BENCH_THROUGHPUT_ROUNDS
// rounds, 3, with the targets interleaved; the median of each figure), then latency in two
// shapes, "closed" (LATENCY_CONCURRENCY connections back to back) and "paced" (BENCH_PACED_RATE
// callbacks/s on a schedule, default half the Node forwarding floor's callbacks/s at saturation in the
// same run), repeated BENCH_ROUNDS times with the targets interleaved; the median of the rounds'
// percentiles is reported, and "added" is the target's minus the baseline's in the same shape. The
// target is relative to the floor (issue 16): cpuRatioToFloor = dispatcher CPU µs per declarative
// callback / the floor's (≤ 1.5), p99RatioToFloor = the dispatcher's added paced p99 / the floor's (≤ 2).
// cpuRatioToFloor comes from a phase of its own (BENCH_PAIRED_ROUNDS, 4) after the throughput rounds: the floor and
// the declarative dispatcher (every thread of both) pinned to one CPU (BENCH_APP_CPU, default the last), their two
// wrk on the others (BENCH_LOAD_CPUS), nginx, PostgreSQL and Redis where the system puts them, and the two
// saturated at the same time, each by its own wrk, so both are always runnable on
// the same run queue and whatever else lands on the CPU (this machine's other work) takes from both alike;
// each round gives its own ratio of CPU per callback, the wrk start order alternates, the median is reported
// (`pairedRounds` has them all). Measured one after the other on this machine, the same build's ratio moved
// from 1.55 to 2.33 between runs minutes apart; `cpuRatioToFloorAlone` is that sequential figure, for comparison.
// BENCH_NODE_FLAGS passes flags to the dispatcher's node (e.g. --trace-gc).
// BENCH_PERF=1 starts the floor and the dispatcher with --perf-basic-prof, so `perf record -p` names their JavaScript.
// Needs DATABASE_URL (REDIS_URL optional), nginx, wrk, taskset (util-linux), 2 CPUs or more and a built tree (`npx tsc -b`).
//   DATABASE_URL=postgres://… REDIS_URL=redis://… npx tsx bench/dispatch.ts
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { sha256Hex } from "@opsplane/platform";
import { createTestDatabase, freePort } from "@opsplane/testing";
import pg from "pg";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const LATENCY_CONCURRENCY = Number(process.env.BENCH_LATENCY_CONCURRENCY ?? 4);
/** The paced phase's rate (default: half the floor's measured capacity) and its connections (far more than ever in flight). */
const PACED_RATE_GIVEN = process.env.BENCH_PACED_RATE ? Number(process.env.BENCH_PACED_RATE) : undefined;
const PACED_CONNECTIONS = Number(process.env.BENCH_PACED_CONNECTIONS ?? 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 5);
const THROUGHPUT_ROUNDS = Number(process.env.BENCH_THROUGHPUT_ROUNDS ?? 3);
/** Rounds of the floor and the declarative dispatcher saturated together on APP_CPU (even: the wrk start order alternates). */
const PAIRED_ROUNDS = Number(process.env.BENCH_PAIRED_ROUNDS ?? 4);
const CPU_COUNT = availableParallelism();
const APP_CPU = process.env.BENCH_APP_CPU ?? String(CPU_COUNT - 1);
const LOAD_CPUS = process.env.BENCH_LOAD_CPUS ?? (CPU_COUNT > 2 ? `0-${CPU_COUNT - 2}` : "0");
const NGINX = process.env.NGINX_BIN ?? "/usr/sbin/nginx";
const WRK = process.env.WRK_BIN ?? "/usr/bin/wrk";
const IDS = 1000;
/** sit's idPatterns: T-… only, so production's ids are not looked up; none with BENCH_ID_PATTERNS=0. */
const SIT_ID_PATTERNS = process.env.BENCH_ID_PATTERNS === "0" ? {} : { "*": "T-[0-9]+" };
/** Share of callbacks whose id a test environment registered; the rest are production's (the bulk of real traffic). */
const REGISTERED_SHARE = Number(process.env.BENCH_REGISTERED_SHARE ?? 0.1);
const root = path.join(__dirname, "..");
const operatorKey = "bench-operator-key-0123456789";

const children: ChildProcess[] = [];
function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] });
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

/** One nginx (master + one worker) in its own prefix: the upstream, or proxy_pass to it. */
async function startNginx(prefix: string, server: string, upstream = ""): Promise<ChildProcess> {
  await mkdir(prefix, { recursive: true });
  await writeFile(
    path.join(prefix, "nginx.conf"),
    `worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  ${upstream}
  server { ${server} }
}
`,
  );
  return start(NGINX, ["-p", prefix, "-c", path.join(prefix, "nginx.conf")]);
}

/**
 * wrk's request and report hooks: each request gets its own body (the share of registered ids as
 * BENCH_REGISTERED_SHARE, the rest fresh ids), and the summary comes back as one JSON line.
 */
const wrkScript = `
local counter, tid, nthreads = 0, 0, 1
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
  for _, t in ipairs(threads) do t:set("nthreads", #threads) end
end
local target, every, ids
local pad = string.rep("x", 200)
local headers = { ["Content-Type"] = "application/json" }
function init(args)
  target, every, ids = args[1], tonumber(args[2]), tonumber(args[3])
end
function request()
  local i = counter * nthreads + tid
  counter = counter + 1
  local id
  if i % every == 0 then id = "T-" .. (i % ids) else id = "P-" .. i end
  return wrk.format("POST", target, headers,
    '{"data":{"out_trade_no":"' .. id .. '","trade_status":"TRADE_SUCCESS","pad":"' .. pad .. '"}}')
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%d,"durationUs":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

/**
 * Added to wrkScript for the paced phase: one schedule for all of wrk's connections, a request every
 * 1/rate s. Each connection asks `delay()` before its next request and waits until that request's slot
 * (wrk's timers have 1 ms resolution, so requests leave in 1 ms groups). With many more connections than
 * requests in flight, sends follow the schedule whatever the target's latency, so a stall of the target
 * shows in the latency of every request it held up (an open-loop load, as wrk2 -R gives).
 */
const pacedScript = `
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec; int clock_gettime(int, bench_timespec*); ]]
local ts = ffi.new("bench_timespec")
local function nowMs() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6 end
local interval, nextAt
local baseInit = init
function init(args)
  baseInit(args)
  interval = 1000 / tonumber(args[4])
end
function delay()
  local now = nowMs()
  nextAt = nextAt or now
  local wait = nextAt - now
  nextAt = nextAt + interval
  if wait <= 0 then return 0 end
  return math.floor(wait + 0.5)
end
`;

/** The body wrk's script sends for request number i (only its size is used here). */
const pad = "x".repeat(200);
const sampleBody = `{"data":{"out_trade_no":"P-1000","trade_status":"TRADE_SUCCESS","pad":"${pad}"}}`;

interface WrkRun {
  requests: number;
  durationUs: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  statusErrors: number;
  timeouts: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  /** CPU (user + system) wrk itself used, in seconds. */
  wrkCpuSeconds: number;
}

/** Runs wrk (one thread) against url; its CPU comes from the wrapping shell's `times`. */
function wrk(
  script: string,
  url: string,
  p: string,
  every: number,
  connections: number,
  seconds: number,
  rate = 0,
  cpuList?: string,
): Promise<WrkRun> {
  const args = [
    "-t1",
    `-c${connections}`,
    `-d${seconds}s`,
    "--latency",
    "--timeout",
    "10s",
    "-s",
    script,
    url,
    "--",
    p,
    String(every),
    String(IDS),
    String(rate),
  ];
  return new Promise((resolve, reject) => {
    const shell = ["bash", "-c", '"$@"; rc=$?; echo WRK_TIMES; times; exit $rc', "bench-wrk", WRK, ...args];
    const child = spawn(cpuList ? "taskset" : shell[0]!, cpuList ? ["--cpu-list", cpuList, ...shell] : shell.slice(1), {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.on("error", reject);
    // "close", not "exit": the process can exit before its stdout (the times line) has been read.
    child.on("close", (code) => {
      const json = /^WRK_JSON (.*)$/m.exec(out);
      const times = /^WRK_TIMES\n.*\n(\d+)m([\d.]+)s (\d+)m([\d.]+)s/m.exec(out);
      if (code !== 0 || !json || !times) return reject(new Error(`wrk failed (${code}):\n${out}`));
      const cpu = Number(times[1]) * 60 + Number(times[2]) + Number(times[3]) * 60 + Number(times[4]);
      resolve({ ...(JSON.parse(json[1]!) as Omit<WrkRun, "wrkCpuSeconds">), wrkCpuSeconds: cpu });
    });
  });
}

/** CPU seconds (user + system) used so far by these processes and their children (Linux /proc). */
async function cpuSeconds(pids: number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    const kids = (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "")).split(" ").filter(Boolean).map(Number);
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
    if (kids.length) ticks += (await cpuSeconds(kids)) * 100;
  }
  return ticks / 100; // USER_HZ
}

/** Read and write system calls made so far by a process (all its threads; Linux /proc/<pid>/io). */
async function syscalls(pid: number): Promise<{ reads: number; writes: number }> {
  const io = await readFile(`/proc/${pid}/io`, "utf8").catch(() => "");
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, "m").exec(io)?.[1] ?? Number.NaN);
  return { reads: field("syscr"), writes: field("syscw") };
}

/** PostgreSQL and Redis processes on this machine (their CPU is part of what a recorded decision and a lookup cost). */
async function storePids(): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const comm = (await readFile(`/proc/${entry}/comm`, "utf8").catch(() => "")).trim();
    if (comm === "postgres" || comm === "redis-server" || comm.startsWith("postgres:")) pids.push(Number(entry));
  }
  return pids;
}

/** CPU seconds of these processes alone (no children: the store's processes are listed one by one). */
async function ownCpuSeconds(pids: number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
  }
  return ticks / 100;
}

/** The whole machine's busy and total CPU seconds (all cores) so far, from /proc/stat. */
async function machineCpu(): Promise<{ busy: number; total: number }> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0]!;
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number); // user nice system idle iowait irq softirq steal
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: (total - f[3]! - f[4]!) / 100, total: total / 100 };
}

const errorsOf = (r: WrkRun) => r.connectErrors + r.readErrors + r.writeErrors + r.statusErrors + r.timeouts;
const round1 = (x: number) => Math.round(x * 10) / 10;
const ms = (us: number) => Math.round(us) / 1000;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Puts every thread of a process (and those it starts later) on these CPUs. */
const pin = (pid: number, cpuList: string) =>
  execFileSync("taskset", ["--all-tasks", "--cpu-list", "--pid", cpuList, String(pid)], { stdio: "ignore" });

async function main(): Promise<void> {
  if (CPU_COUNT < 2) throw new Error("the Node targets get a CPU of their own and the load the others: this bench needs 2 CPUs or more");
  try {
    execFileSync("taskset", ["--version"], { stdio: "ignore" });
  } catch {
    throw new Error("taskset not found: apt-get install -y util-linux");
  }
  const db = await createTestDatabase();
  const [upstreamPort, nginxPort, floorPort, dispatcherPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const tmp = await mkdtemp(path.join(tmpdir(), "bench-dispatch-"));
  try {
    const script = path.join(tmp, "callbacks.lua");
    await writeFile(script, wrkScript);
    const pacedScriptFile = path.join(tmp, "paced.lua");
    await writeFile(pacedScriptFile, wrkScript + pacedScript);
    const upstreamProc = await startNginx(
      path.join(tmp, "upstream"),
      `listen 127.0.0.1:${upstreamPort}; location / { default_type application/json; return 200 '{"code":"SUCCESS"}'; }`,
    );
    const nginxProc = await startNginx(
      path.join(tmp, "proxy"),
      `listen 127.0.0.1:${nginxPort};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }`,
      `upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; keepalive_requests 1000000; }`,
    );
    const floorProc = start(
      process.execPath,
      [
        ...(process.env.BENCH_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_PROF] : []),
        ...(process.env.BENCH_PERF ? ["--perf-basic-prof"] : []),
        "--import",
        "tsx",
        path.join(root, "bench/forwarder-floor.ts"),
      ],
      {
        PORT: String(floorPort),
        UPSTREAM_URL: `http://127.0.0.1:${upstreamPort}`,
      },
    );
    const dispatcherProc = start(
      process.execPath,
      [
        ...(process.env.BENCH_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_PROF] : []),
        ...(process.env.BENCH_PERF ? ["--perf-basic-prof"] : []),
        ...(process.env.BENCH_NODE_FLAGS ? process.env.BENCH_NODE_FLAGS.split(" ") : []),
        // BENCH_DISPATCHER_MAIN: another build of the service (A/B comparisons of a change on the same machine).
        process.env.BENCH_DISPATCHER_MAIN ?? path.join(root, "services/callback-dispatcher/dist/main.js"),
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
    const floor = `http://127.0.0.1:${floorPort}`;
    await Promise.all([waitFor(`${dispatcher}/readyz`), waitFor(`${nginx}/`), waitFor(`${upstream}/`), waitFor(`${floor}/`)]);

    const api = async (method: string, p: string, body: unknown) => {
      const res = await fetch(`${dispatcher}${p}`, {
        method,
        headers: { authorization: `Bearer ${operatorKey}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
    };
    await api("PUT", "/_dispatcher/v1/environments/prod", { baseUrl: upstream, production: true });
    // As the README advises wherever test ids can be told apart: sit may claim T-… ids only, so production's
    // P-… callbacks are not looked up. BENCH_ID_PATTERNS=0 leaves sit claiming any id (every callback looked up).
    await api("PUT", "/_dispatcher/v1/environments/sit", { baseUrl: upstream, idPatterns: SIT_ID_PATTERNS });
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

    const every = Math.max(1, Math.round(1 / REGISTERED_SHARE));
    // Every target gets the same load from the same wrk: same connections, same bodies, same warm-up.
    const targets: Array<{ name: string; origin: string; path: string; pid: number }> = [
      { name: "direct", origin: upstream, path: "/notify/json/pay", pid: upstreamProc.pid! },
      { name: "nginx", origin: nginx, path: "/notify/json/pay", pid: nginxProc.pid! },
      { name: "nodeForwarder", origin: floor, path: "/notify/json/pay", pid: floorProc.pid! },
      { name: "dispatcherDeclarative", origin: dispatcher, path: "/notify/json/pay", pid: dispatcherProc.pid! },
      { name: "dispatcherScript", origin: dispatcher, path: "/notify/script/pay", pid: dispatcherProc.pid! },
    ].filter((t) => {
      const only = process.env.BENCH_TARGETS?.split(","); // e.g. "dispatcherDeclarative" while profiling
      // The baseline and the floor always run: every latency is read against the one, every ratio against the other.
      return !only || t.name === "direct" || t.name === "nodeForwarder" || only.includes(t.name);
    });
    const answered: Record<string, number> = {};
    const run = async (t: (typeof targets)[number], connections: number, seconds: number, rate = 0, cpuList?: string) => {
      const r = await wrk(rate ? pacedScriptFile : script, t.origin, t.path, every, connections, seconds, rate, cpuList);
      answered[t.name] = (answered[t.name] ?? 0) + r.requests;
      return r;
    };

    // Warm-up: JIT, pools, sandbox. A dispatcher that has run for a while has compiled its hot path (pg,
    // ioredis, the bus, protobuf: far more code than the floor's), so compiling it is not measured.
    for (const t of targets) await run(t, CONCURRENCY, WARMUP_SECONDS);
    // Throughput rounds interleaved like the latency rounds below, so a drift of the machine's other
    // load falls on the dispatcher and the floor alike; each figure is the median of the rounds.
    const throughputRounds: Record<string, Array<Record<string, number>>> = {};
    for (let i = 0; i < THROUGHPUT_ROUNDS; i++)
      for (const t of targets) {
        const store = await storePids();
        const [calls0, target0, upstream0, store0, machine0] = [
          await syscalls(t.pid),
          await cpuSeconds([t.pid]),
          await cpuSeconds([upstreamProc.pid!]),
          await ownCpuSeconds(store),
          await machineCpu(),
        ];
        const r = await run(t, CONCURRENCY, SECONDS);
        const [calls1, target1, upstream1, store1, machine1] = [
          await syscalls(t.pid),
          await cpuSeconds([t.pid]),
          await cpuSeconds([upstreamProc.pid!]),
          await ownCpuSeconds(store),
          await machineCpu(),
        ];
        const perCallback = (seconds: number) => round1((seconds * 1e6) / r.requests);
        throughputRounds[t.name] ??= [];
        throughputRounds[t.name]!.push({
          callbacksPerSecond: Math.round(r.requests / (r.durationUs / 1e6)),
          p50Ms: ms(r.p50Us),
          p99Ms: ms(r.p99Us),
          errors: errorsOf(r),
          /** The measured target's own CPU (for "direct": the upstream nginx). */
          cpuMicrosPerCallback: perCallback(target1 - target0),
          upstreamCpuMicrosPerCallback: perCallback(upstream1 - upstream0),
          /** The target's read and write system calls a callback (sockets, its store's included): each costs kernel CPU. */
          readSyscallsPerCallback: Math.round(((calls1.reads - calls0.reads) / r.requests) * 100) / 100,
          writeSyscallsPerCallback: Math.round(((calls1.writes - calls0.writes) / r.requests) * 100) / 100,
          wrkCpuMicrosPerCallback: perCallback(r.wrkCpuSeconds),
          /** PostgreSQL and Redis (decisions recorded, lookups). */
          storeCpuMicrosPerCallback: perCallback(store1 - store0),
          /** Everything on the machine (target, upstream, wrk, PostgreSQL, Redis, kernel). */
          machineCpuMicrosPerCallback: perCallback(machine1.busy - machine0.busy),
          machineBusyPercent: Math.round(((machine1.busy - machine0.busy) / (machine1.total - machine0.total)) * 100),
        });
      }
    // The ratio: the floor and the declarative dispatcher saturated together on APP_CPU (see the header).
    const floorTarget = targets.find((t) => t.name === "nodeForwarder")!;
    const declarativeTarget = targets.find((t) => t.name === "dispatcherDeclarative");
    const pairedRounds: Array<Record<string, number>> = [];
    // Pinned for this phase only: the other phases measure each target as it runs on its own.
    if (declarativeTarget) for (const t of [floorTarget, declarativeTarget]) pin(t.pid, APP_CPU);
    for (let i = 0; declarativeTarget && i < PAIRED_ROUNDS; i++) {
      const pair = [floorTarget, declarativeTarget];
      const cpu0 = await Promise.all(pair.map((t) => cpuSeconds([t.pid])));
      const started = Date.now();
      const order = i % 2 ? [declarativeTarget, floorTarget] : pair;
      const runs = await Promise.all(order.map((t) => run(t, CONCURRENCY, SECONDS, 0, LOAD_CPUS)));
      const [floorRun, declarativeRun] = pair.map((t) => runs[order.indexOf(t)]!);
      const elapsed = (Date.now() - started) / 1000;
      const [floorCpuSeconds, declarativeCpuSeconds] = (await Promise.all(pair.map((t) => cpuSeconds([t.pid])))).map(
        (c, k) => c - cpu0[k]!,
      );
      const floorCpu = (floorCpuSeconds! * 1e6) / floorRun!.requests;
      const declarativeCpu = (declarativeCpuSeconds! * 1e6) / declarativeRun!.requests;
      pairedRounds.push({
        floorCallbacksPerSecond: Math.round(floorRun!.requests / (floorRun!.durationUs / 1e6)),
        dispatcherCallbacksPerSecond: Math.round(declarativeRun!.requests / (declarativeRun!.durationUs / 1e6)),
        floorCpuMicrosPerCallback: round1(floorCpu),
        dispatcherCpuMicrosPerCallback: round1(declarativeCpu),
        /** Share of APP_CPU the two used: near 100, they and not their wrk set the pace. */
        appCpuBusyPercent: Math.round(((floorCpuSeconds! + declarativeCpuSeconds!) / elapsed) * 100),
        errors: errorsOf(floorRun!) + errorsOf(declarativeRun!),
        cpuRatioToFloor: Math.round((declarativeCpu / floorCpu) * 100) / 100,
      });
    }
    if (declarativeTarget) for (const t of [floorTarget, declarativeTarget]) pin(t.pid, `0-${CPU_COUNT - 1}`);

    const throughput = Object.fromEntries(
      Object.entries(throughputRounds).map(([name, rs]) => [
        name,
        Object.fromEntries(
          Object.keys(rs[0]!).map((k) => [k, k === "errors" ? rs.reduce((a, r) => a + r[k]!, 0) : median(rs.map((r) => r[k]!))]),
        ),
      ]),
    );

    // Latency in two shapes, the targets interleaved round by round so slow drifts of the machine hit
    // all of them alike: "closed", a few connections sending back to back (as fast as each target
    // answers), and "paced", the target rate on a schedule (what a platform's callbacks look like).
    // Half the floor's capacity: a load any Node process here can carry, so the tail says what the work adds.
    const pacedRate = PACED_RATE_GIVEN ?? Math.round((throughput.nodeForwarder?.callbacksPerSecond ?? 0) / 2);
    const shapes = {
      closed: { connections: LATENCY_CONCURRENCY, rate: 0 },
      paced: { connections: PACED_CONNECTIONS, rate: pacedRate },
    };
    const rounds: Record<string, Record<string, WrkRun[]>> = { closed: {}, paced: {} };
    for (let i = 0; i < ROUNDS; i++)
      for (const t of targets)
        for (const [shape, { connections, rate }] of Object.entries(shapes)) {
          rounds[shape]![t.name] ??= [];
          rounds[shape]![t.name]!.push(await run(t, connections, SECONDS, rate));
        }
    const summarise = (rs: WrkRun[]) => ({
      callbacksPerSecond: Math.round(median(rs.map((r) => r.requests / (r.durationUs / 1e6)))),
      p50Ms: ms(median(rs.map((r) => r.p50Us))),
      p90Ms: ms(median(rs.map((r) => r.p90Us))),
      p99Ms: ms(median(rs.map((r) => r.p99Us))),
      p99MsPerRound: rs.map((r) => ms(r.p99Us)),
      maxMsPerRound: rs.map((r) => ms(r.maxUs)),
      errors: rs.reduce((a, r) => a + errorsOf(r), 0),
    });
    const ms3 = (x: number) => Math.round(x * 1000) / 1000;
    // wrk times a request from when it is written: the paced schedule holds (a stall shows in every request
    // it held up) only while fewer than PACED_CONNECTIONS are in flight, i.e. while latency stays under
    // PACED_CONNECTIONS / rate. Past it, or when the target cannot deliver the rate at all, requests leave
    // late and the wait before sending is not counted: the paced tail is then understated.
    const openLoopUpToMs = ms3((PACED_CONNECTIONS / pacedRate) * 1000);
    const scheduleHeld = (l: ReturnType<typeof summarise>) => l.callbacksPerSecond >= 0.98 * pacedRate && l.p99Ms < openLoopUpToMs;
    const summaries = Object.fromEntries(
      Object.entries(rounds).map(([shape, byTarget]) => [
        shape,
        Object.fromEntries(targets.map((t) => [t.name, summarise(byTarget[t.name]!)])),
      ]),
    );
    const results = Object.fromEntries(
      targets.map((t) => {
        const latency = Object.fromEntries(
          Object.entries(summaries).map(([shape, byTarget]) => {
            const l = byTarget[t.name]!;
            const base = byTarget.direct!;
            const added = { p50: ms3(l.p50Ms - base.p50Ms), p99: ms3(l.p99Ms - base.p99Ms) };
            const held = shape === "paced" ? { scheduleHeld: scheduleHeld(l) } : {};
            return [shape, t.name === "direct" ? { ...l, ...held } : { ...l, ...held, addedMs: added }];
          }),
        ) as Record<string, ReturnType<typeof summarise> & { addedMs?: { p50: number; p99: number } }>;
        return [t.name, { throughput: throughput[t.name], latency }];
      }),
    );

    // The dispatcher did its whole job for every callback: one recorded decision each.
    await new Promise((r) => setTimeout(r, 1000)); // last decision flush (DECISION_FLUSH_MS)
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client
      .query<{ rule: string; reason: string; target_env: string; n: string }>(
        "SELECT rule, reason, target_env, count(*) AS n FROM callback_dispatcher.decisions GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
      )
      .finally(() => client.end());
    const decisions = {
      answeredByDispatcher: (answered.dispatcherDeclarative ?? 0) + (answered.dispatcherScript ?? 0),
      recorded: rows.reduce((a, r) => a + Number(r.n), 0),
      byRuleReasonTarget: rows.map((r) => ({ rule: r.rule, reason: r.reason, target: r.target_env, count: Number(r.n) })),
    };

    const declarative = results.dispatcherDeclarative;
    const floorCpu = results.nodeForwarder?.throughput?.cpuMicrosPerCallback;
    const declarativeCpu = declarative?.throughput?.cpuMicrosPerCallback;
    const ratio = (a: number | undefined, b: number | undefined) =>
      // A floor that added nothing measurable (at or under the direct baseline) has no ratio.
      a === undefined || b === undefined || b <= 0 ? undefined : Math.round((a / b) * 100) / 100;
    const cpuRatioToFloorAlone = ratio(declarativeCpu, floorCpu);
    const cpuRatioToFloor = pairedRounds.length ? Math.round(median(pairedRounds.map((r) => r.cpuRatioToFloor!)) * 100) / 100 : undefined;
    const p99RatioToFloor = ratio(declarative?.latency.paced?.addedMs?.p99, results.nodeForwarder?.latency.paced?.addedMs?.p99);
    console.log(
      JSON.stringify(
        {
          bench: "callback-dispatcher",
          method:
            `wrk ${WRK} (1 thread, keep-alive, Lua-built POST bodies) against each target in turn; upstream nginx 'return 200' (1 worker); ` +
            `nginx proxy_pass (1 worker, upstream keepalive 64); throughput: ${CONCURRENCY} connections for ${SECONDS} s after ${WARMUP_SECONDS} s warm-up, ${THROUGHPUT_ROUNDS} interleaved rounds, median; ` +
            `latency: closed = ${LATENCY_CONCURRENCY} connections back to back, paced = ${pacedRate}/s on a schedule over ${PACED_CONNECTIONS} connections` +
            `${PACED_RATE_GIVEN ? "" : " (half the floor's callbacks/s at saturation)"}; ` +
            `${SECONDS} s each, ${ROUNDS} interleaved rounds, median; added = target - direct in the same shape; ` +
            `cpuRatioToFloor: the floor and the declarative dispatcher saturated together on CPU ${APP_CPU} (their wrk on ${LOAD_CPUS}), ` +
            `${PAIRED_ROUNDS} rounds of ${SECONDS} s, wrk start order alternating, median of the rounds' ratios`,
          cores: CPU_COUNT,
          loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
          registry: process.env.REDIS_URL ? "redis" : "memory",
          sitIdPatterns: SIT_ID_PATTERNS,
          registeredShare: 1 / every,
          seconds: SECONDS,
          concurrency: CONCURRENCY,
          latencyConcurrency: LATENCY_CONCURRENCY,
          pacedRate,
          pacedConnections: PACED_CONNECTIONS,
          // Latency the paced shape measures fully (see scheduleHeld in each target's paced latency).
          pacedOpenLoopUpToMs: openLoopUpToMs,
          rounds: ROUNDS,
          bodyBytes: Buffer.byteLength(sampleBody),
          results,
          decisions,
          // What one Node process that only forwards costs here, and what routing and recording add to it:
          // a single dispatcher process cannot go past capacityPerCore, whatever the dispatcher does.
          nodeForwarderFloor: floorCpu
            ? {
                cpuMicrosPerCallback: floorCpu,
                capacityPerCore: Math.round(1e6 / floorCpu),
                dispatcherCpuMicrosAbove: declarativeCpu === undefined ? undefined : round1(declarativeCpu - floorCpu),
              }
            : undefined,
          // The target, relative to the floor measured in this run (issue 16): CPU per declarative callback at
          // most 1.5 x the floor's, and added p99 at the paced rate (half the floor's capacity) at most 2 x the floor's.
          cpuRatioToFloor,
          pairedRounds,
          cpuRatioToFloorAlone,
          p99RatioToFloor,
          target: {
            cpuRatioToFloor: 1.5,
            p99RatioToFloor: 2,
            met: cpuRatioToFloor !== undefined && cpuRatioToFloor <= 1.5 && p99RatioToFloor !== undefined && p99RatioToFloor <= 2,
          },
        },
        null,
        2,
      ),
    );
  } finally {
    for (const c of children) c.kill("SIGTERM");
    await Promise.all(
      children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined)),
    );
    await rm(tmp, { recursive: true, force: true });
    await db.drop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
