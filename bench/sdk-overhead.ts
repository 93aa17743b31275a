// @opsplane/sdk: what joining the platform costs a service. The loan demo (examples/demo-app,
// loans in memory, so the handler is cheap and the SDK's share as large as it gets) runs twice on
// this machine in this run: without the SDK (`--without-sdk`, the same handlers) and with it,
// joined to a real config-center (its own process, seeded: rate table, bank codes, and rules on
// the interfaces under load that evaluate on every request but never bite: a rate limit by TPS
// and by concurrency, a circuit breaker, an open route). The load comes from `wrk` (one thread,
// keep-alive, its own process per app): four queries (GET /loans/{id}) to one application (POST /loans).
//
// Both apps are measured at the same time, on the same CPU: `taskset` puts the two apps (every
// thread) on one CPU (BENCH_APP_CPU, default the last) and the two wrk processes on the others
// (BENCH_LOAD_CPUS). A round has a throughput phase (each app's wrk keeps BENCH_CONNECTIONS
// connections busy for BENCH_SECONDS: requests/s at saturation, each app's CPU time per request
// from /proc) and a latency phase (requests on a schedule for BENCH_PACED_SECONDS, one app after
// the other: p50/p99 of a service that is not saturated, so at BENCH_RATE requests/s, or at a quarter of what
// the slower app served in the throughput phase if that is less: on a loaded machine the apps'
// share of their CPU can fall below BENCH_RATE, and the p99 of requests queued behind each other
// measures the queue, not the app). BENCH_SESSIONS sessions each start fresh processes of both apps
// (which one first alternates), warm them up for 5 s, and measure BENCH_ROUNDS rounds, whose wrk
// processes start in turn first.
// Why so: the development machine has 2 CPUs shared with other work. Measured one after the other,
// the same build against itself (BENCH_AA=1: the "SDK" app runs without the SDK too) came out 12 %
// apart, single rounds from −108 % to +34 %: a second's requests/s follows whoever else had the CPU
// in that second. Saturated on one CPU at once, the two apps are always runnable on the same run
// queue, so the scheduler gives them equal time and whatever else lands on that CPU takes from both
// alike; their requests/s then stand in the ratio of their CPU time per request, which is what the
// SDK costs, and rounds of one session agree within a few per cent. Sessions, because two
// processes of the same build can differ by several per cent for their whole life (where V8's
// optimising compiler, which runs concurrently, happened to get to): two sessions of one run came
// out +7 % and −5 %, each of its rounds agreeing. And the order the two wrk processes start in
// matters: in an A/A run the app whose wrk started second came out 6 to 8 % slower, whichever app
// it was; so the order alternates from round to round, and a session's figure is the mean of its
// rounds, as many of each order (BENCH_ROUNDS even). Each app gets about half the CPU, so its requests/s
// are about half of what it would serve alone on it. `saturation` is the share of the throughput
// phase each app's main thread spent running or waiting for the CPU (schedstat): near 1, the app
// and not its wrk set the pace. Costs and added figures are paired: each round gives its own
// ((baseline − SDK) / baseline requests/s, SDK − baseline p99, …), a session the mean of its
// rounds, and the run the median over the sessions (`perSession` has them all); each app's own
// figures are the medians of all its rounds, and its resident memory after the load the median over the sessions.
// Needs DATABASE_URL (config-center's), wrk (`apt-get install -y wrk`), taskset (util-linux) on a
// machine with 2 CPUs or more, and a built tree (`npx tsc -b`); REDIS_URL optional. BENCH_NODE_FLAGS
// passes flags to both apps' node (e.g. --cpu-prof, to compare where time goes).
//   npx tsx scripts/with-test-deps.ts npx tsx bench/sdk-overhead.ts
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { sha256Hex } from "@opsplane/platform";
import { createTestDatabase, eventually, freePort } from "@opsplane/testing";
import { demoAppId, seedDemo } from "../examples/demo-app/src/seed.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const PACED_SECONDS = Number(process.env.BENCH_PACED_SECONDS ?? 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const RATE = Number(process.env.BENCH_RATE ?? 2000);
/** Fresh processes of both apps per session; rounds per session. */
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
/** The control: both apps without the SDK, to show what the method itself makes of no difference. */
const AA = process.env.BENCH_AA === "1";
const CPU_COUNT = cpus().length;
const APP_CPU = process.env.BENCH_APP_CPU ?? String(CPU_COUNT - 1);
const LOAD_CPUS = process.env.BENCH_LOAD_CPUS ?? (CPU_COUNT > 1 ? `0-${CPU_COUNT - 2}` : "0");
/** One application in this many requests; the others are queries. */
const APPLY_EVERY = 5;
const WRK = process.env.WRK_BIN ?? "wrk";
const root = path.join(__dirname, "..");
const adminKey = "bench-admin-key-0123456789";
const appSecret = "bench-loan-secret";

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const round2 = (n: number) => Math.round(n * 100) / 100;
const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** Rules on both interfaces under load, evaluated on every request, never biting. */
const benchRules = {
  "rate-limit/loan.apply": { tps: 1_000_000, concurrency: 100_000 },
  "rate-limit/loan.query": { tps: 1_000_000, concurrency: 100_000 },
  "circuit-breaker/loan.apply": { errorRatio: 0.5, minRequests: 100, windowMs: 10_000, openMs: 5_000 },
  "circuit-breaker/loan.query": { errorRatio: 0.5, minRequests: 100, windowMs: 10_000, openMs: 5_000 },
  "route/loan.query": { enabled: true },
};

const children: ChildProcess[] = [];
function start(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  return child;
}

async function answers(url: string, child: ChildProcess): Promise<void> {
  await eventually(
    url,
    async () => {
      if (child.exitCode !== null) throw new Error(`${url}: its process exited with ${child.exitCode}`);
      return (await fetch(url)).ok;
    },
    60_000,
    100,
  );
}

async function startCenter(databaseUrl: string): Promise<string> {
  const port = await freePort();
  const child = start(["--import", "tsx", "services/config-center/src/main.ts"], {
    DATABASE_URL: databaseUrl,
    REDIS_URL: process.env.REDIS_URL ?? "",
    CONFIG_REDIS_PREFIX: `bench:${process.pid}:`,
    PORT: String(port),
    HOST: "127.0.0.1",
    LOG_LEVEL: "warn",
    AUTH_API_KEYS: `bench:admin:${sha256Hex(adminKey)}`,
  });
  const url = `http://127.0.0.1:${port}`;
  await answers(`${url}/readyz`, child);
  return url;
}

interface Target {
  name: "baseline" | "sdk";
  url: string;
  pid: number;
  child: ChildProcess;
  /** The loan every query reads. */
  loanPath: string;
}

async function startApp(name: Target["name"], centerUrl: string, snapshotDir: string): Promise<Target> {
  const port = await freePort();
  const main = "examples/demo-app/dist/main.js";
  const flags = process.env.BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? [];
  const child =
    name === "baseline" || AA
      ? start([...flags, main, "--without-sdk"], { PORT: String(port), LOG_LEVEL: "warn", DATABASE_URL: "" })
      : start([...flags, main], {
          PORT: String(port),
          LOG_LEVEL: "warn",
          DATABASE_URL: "",
          OPSPLANE_CONFIG_URL: centerUrl,
          OPSPLANE_APP_ID: demoAppId,
          OPSPLANE_APP_SECRET: appSecret,
          OPSPLANE_ENV: "dev",
          OPSPLANE_TERMINAL_PORT: String(await freePort()),
          OPSPLANE_SNAPSHOT_DIR: snapshotDir,
          OPSPLANE_REDIS_URL: process.env.REDIS_URL ?? "",
          OPSPLANE_REDIS_PREFIX: `bench:${process.pid}:`,
          OPSPLANE_LOG_LEVEL: "warn",
        });
  const url = `http://127.0.0.1:${port}`;
  await answers(`${url}/healthz`, child);
  // Every thread of the app, those it starts later included (children of its threads inherit it).
  execFileSync("taskset", ["--all-tasks", "--cpu-list", "--pid", APP_CPU, String(child.pid)], { stdio: "ignore" });
  const res = await fetch(`${url}/loans`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ applicant: "bench", amount: 20000, termMonths: 24, bankCode: "104100000004" }),
  });
  if (res.status !== 201) throw new Error(`${name}: POST /loans answered ${res.status}: ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  return { name, url, pid: child.pid!, child, loanPath: `/loans/${id}` };
}

/** SIGTERM: the app drains and exits (with the SDK, its instance goes offline at config-center). */
async function stopApp(t: Target): Promise<void> {
  if (t.child.exitCode !== null || t.child.signalCode !== null) return;
  await new Promise((resolve) => {
    t.child.once("exit", resolve);
    t.child.kill("SIGTERM");
  });
}

/**
 * wrk's hooks: four queries, then one application, each formatted once (so wrk spends its CPU on
 * sending, not on building requests); the summary as one JSON line. The paced part as in bench/dispatch.ts.
 */
const wrkScript = (paced: boolean) => `
local n, every, query, apply = 0
local headers = { ["Content-Type"] = "application/json" }
local applyBody = '{"applicant":"bench","amount":20000,"termMonths":24,"bankCode":"104100000004"}'
${
  paced
    ? `local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec; int clock_gettime(int, bench_timespec*); ]]
local ts = ffi.new("bench_timespec")
local function nowMs() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6 end
local interval, nextAt
function delay()
  local now = nowMs()
  nextAt = nextAt or now
  local wait = nextAt - now
  nextAt = nextAt + interval
  if wait <= 0 then return 0 end
  return math.floor(wait + 0.5)
end`
    : ""
}
function init(args)
  every = tonumber(args[2])
  query = wrk.format("GET", args[1])
  apply = wrk.format("POST", "/loans", headers, applyBody)
  ${paced ? "interval = 1000 / tonumber(args[3])" : ""}
end
function request()
  n = n + 1
  if n % every == 0 then return apply end
  return query
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%d,"durationUs":%d,"errors":%d,"statusErrors":%d,"p50Us":%d,"p99Us":%d,"maxUs":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`;

interface WrkRun {
  requests: number;
  durationUs: number;
  errors: number;
  statusErrors: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

async function wrk(script: string, t: Target, connections: number, seconds: number, rate?: number): Promise<WrkRun> {
  const args = ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", "-s", script, t.url, "--", t.loanPath, String(APPLY_EVERY)];
  if (rate) args.push(String(rate));
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn("taskset", ["--cpu-list", LOAD_CPUS, WRK, ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    child.stdout.on("data", (c: Buffer) => {
      text += c;
    });
    child.on("error", reject);
    // "close", not "exit": only then has all of its output been read.
    child.on("close", (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}:\n${text}`))));
  });
  const json = /^WRK_JSON (.*)$/m.exec(out);
  if (!json) throw new Error(`wrk said:\n${out}`);
  const run = JSON.parse(json[1]!) as WrkRun;
  if (run.errors || run.statusErrors)
    throw new Error(`${t.name}: ${run.errors} socket errors, ${run.statusErrors} non-2xx answers: not a clean run`);
  return run;
}

/** CPU seconds (user + system) a process has used, all threads (Linux /proc). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Resident memory of a process, all threads (Linux /proc). */
async function rssMiB(pid: number): Promise<number> {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, "utf8"));
  return round2(Number(kb?.[1]) / 1024);
}

/** Nanoseconds the main thread has spent on a CPU and waiting in a run queue (Linux schedstat). */
async function runnableNs(pid: number): Promise<number> {
  const [onCpu, waiting] = (await readFile(`/proc/${pid}/task/${pid}/schedstat`, "utf8")).split(" ").map(Number);
  return onCpu! + waiting!;
}

interface Round {
  rps: number;
  /** The latency phase's requests/s. */
  pacedRate: number;
  saturatedP99Ms: number;
  cpuUsPerRequest: number;
  /** Share of the throughput phase the main thread was running or runnable. */
  saturation: number;
  p50Ms: number;
  p99Ms: number;
}

/** One round: both apps saturated at once, then each paced alone. */
async function measure(targets: Target[], scripts: { closed: string; paced: string }): Promise<Round[]> {
  const before = await Promise.all(targets.map(async (t) => ({ cpu: await cpuSeconds(t.pid), runnable: await runnableNs(t.pid) })));
  const startedAt = process.hrtime.bigint();
  const sat = await Promise.all(targets.map((t) => wrk(scripts.closed, t, CONNECTIONS, SECONDS)));
  const wallNs = Number(process.hrtime.bigint() - startedAt);
  const after = await Promise.all(targets.map(async (t) => ({ cpu: await cpuSeconds(t.pid), runnable: await runnableNs(t.pid) })));
  const rps = sat.map((r) => Math.round(r.requests / (r.durationUs / 1e6)));
  const pacedRate = Math.max(1, Math.min(RATE, Math.floor(Math.min(...rps) / 4)));
  // One app at a time (in the round's order): paced at once, each app's requests would queue behind
  // the other's on their shared CPU, and the p99 would measure that queue.
  const paced: WrkRun[] = [];
  for (const t of targets) paced.push(await wrk(scripts.paced, t, CONNECTIONS, PACED_SECONDS, pacedRate));
  return targets.map((_, i) => ({
    rps: rps[i]!,
    pacedRate,
    saturatedP99Ms: round3(sat[i]!.p99Us / 1000),
    cpuUsPerRequest: round2(((after[i]!.cpu - before[i]!.cpu) * 1e6) / sat[i]!.requests),
    saturation: round2((after[i]!.runnable - before[i]!.runnable) / wallNs),
    p50Ms: round3(paced[i]!.p50Us / 1000),
    p99Ms: round3(paced[i]!.p99Us / 1000),
  }));
}

async function main(): Promise<void> {
  try {
    execFileSync(WRK, ["--version"], { stdio: "ignore" });
  } catch (err) {
    // wrk --version exits 1 after printing its version; only a missing binary is a problem.
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${WRK} not found: apt-get install -y wrk (or set WRK_BIN)`);
  }
  if (CPU_COUNT < 2) throw new Error("the apps get a CPU of their own and the load the others: this bench needs 2 CPUs or more");
  try {
    execFileSync("taskset", ["--version"], { stdio: "ignore" });
  } catch {
    throw new Error("taskset not found: apt-get install -y util-linux");
  }
  const loadStart = loadavg().map(round2);
  const startedAt = Date.now();
  const db = await createTestDatabase();
  const work = await mkdtemp(path.join(tmpdir(), "sdk-overhead-"));
  try {
    const center = await startCenter(db.url);
    await seedDemo({ configUrl: center, adminKey, secret: appSecret, env: "dev", rules: benchRules });
    const scripts = { closed: path.join(work, "closed.lua"), paced: path.join(work, "paced.lua") };
    await writeFile(scripts.closed, wrkScript(false));
    await writeFile(scripts.paced, wrkScript(true));

    const sessions: Array<Record<Target["name"], Round[]>> = [];
    const rss: Record<Target["name"], number[]> = { baseline: [], sdk: [] };
    for (let n = 0; n < SESSIONS; n++) {
      // Which app starts first alternates too.
      const started: Target[] = [];
      for (const name of n % 2 ? (["sdk", "baseline"] as const) : (["baseline", "sdk"] as const))
        started.push(await startApp(name, center, work));
      const [baseline, sdk] = ["baseline", "sdk"].map((name) => started.find((t) => t.name === name)!) as [Target, Target];
      try {
        await eventually("the SDK app online at config-center, alone", async () => {
          const online = await fetch(`${center}/config/v1/apps/${demoAppId}/instances?state=online`, {
            headers: { authorization: `Bearer ${adminKey}` },
          });
          const { instances } = (await online.json()) as { instances: unknown[] };
          return instances.length === (AA ? 0 : 1);
        });
        // Warm-up: JIT, pools, the SDK's first reports of these interfaces.
        await Promise.all([baseline, sdk].map((t) => wrk(scripts.closed, t, CONNECTIONS, 5)));
        const rounds: Record<Target["name"], Round[]> = { baseline: [], sdk: [] };
        for (let r = 0; r < ROUNDS; r++) {
          // Which app's wrk starts first alternates: it matters (see above).
          const order = r % 2 ? [sdk, baseline] : [baseline, sdk];
          const measured = await measure(order, scripts);
          for (const [i, t] of order.entries()) rounds[t.name].push(measured[i]!);
        }
        sessions.push(rounds);
        // After the load: what each app holds once it has served (the SDK's threads included).
        for (const t of [baseline, sdk]) rss[t.name].push(await rssMiB(t.pid));
      } finally {
        await Promise.all(started.map(stopApp));
      }
    }

    const all = (name: Target["name"]) => sessions.flatMap((rounds) => rounds[name]);
    const summary = (name: Target["name"]) => {
      const rs = all(name);
      const pick = (k: keyof Round) => round3(median(rs.map((x) => x[k])));
      return {
        rps: pick("rps"),
        pacedRate: pick("pacedRate"),
        p50: pick("p50Ms"),
        p99: pick("p99Ms"),
        satP99: pick("saturatedP99Ms"),
        cpu: pick("cpuUsPerRequest"),
        saturation: pick("saturation"),
      };
    };
    const b = summary("baseline");
    const s = summary("sdk");
    /** What `f` makes of a round's baseline and SDK figures: its mean over a session's rounds (as many of each order), then the median over the sessions. */
    const inSession = (rounds: Record<Target["name"], Round[]>, f: (b: Round, s: Round) => number) =>
      mean(rounds.baseline.map((br, i) => f(br, rounds.sdk[i]!)));
    const paired = (f: (b: Round, s: Round) => number) => median(sessions.map((rounds) => inSession(rounds, f)));
    const costPct = (br: Round, sr: Round) => ((br.rps - sr.rps) / br.rps) * 100;
    const addedP99 = (br: Round, sr: Round) => sr.p99Ms - br.p99Ms;
    const cpuPct = (br: Round, sr: Round) => ((sr.cpuUsPerRequest - br.cpuUsPerRequest) / br.cpuUsPerRequest) * 100;
    const throughputCostPct = round2(paired(costPct));
    const cpuCostPct = round2(paired(cpuPct));
    const addedP99Ms = round3(paired(addedP99));
    console.log(
      JSON.stringify(
        {
          bench: "sdk-overhead",
          ...(AA ? { control: "A/A: both apps without the SDK" } : {}),
          baselineRps: b.rps,
          sdkRps: s.rps,
          throughputCostPct,
          baselineP99Ms: b.p99,
          sdkP99Ms: s.p99,
          addedP99Ms,
          baselineP50Ms: b.p50,
          sdkP50Ms: s.p50,
          addedP50Ms: round3(paired((br, sr) => sr.p50Ms - br.p50Ms)),
          baselineSaturatedP99Ms: b.satP99,
          sdkSaturatedP99Ms: s.satP99,
          baselineCpuUsPerRequest: b.cpu,
          sdkCpuUsPerRequest: s.cpu,
          addedCpuUsPerRequest: round2(paired((br, sr) => sr.cpuUsPerRequest - br.cpuUsPerRequest)),
          cpuCostPct,
          saturation: { baseline: b.saturation, sdk: s.saturation },
          baselineRssMiB: round2(median(rss.baseline)),
          sdkRssMiB: round2(median(rss.sdk)),
          targetsMet: { throughputCostBelow5Pct: throughputCostPct < 5, addedP99Below0_2Ms: addedP99Ms < 0.2 },
          sessions: SESSIONS,
          roundsPerSession: ROUNDS,
          method: `throughput: both apps at once on CPU ${APP_CPU}, their wrk on CPU ${LOAD_CPUS}; latency: each app alone, same CPUs; fresh processes per session, wrk start order alternating by round; per app: medians of all rounds; costs and added figures: medians over the sessions of each session's mean paired difference`,
          perSession: sessions.map((rounds) => ({
            throughputCostPct: round2(inSession(rounds, costPct)),
            addedP99Ms: round3(inSession(rounds, addedP99)),
            cpuCostPct: round2(inSession(rounds, cpuPct)),
            rounds,
          })),
          connections: CONNECTIONS,
          secondsPerPhase: SECONDS,
          pacedSecondsPerPhase: PACED_SECONDS,
          pacedRate: { max: RATE, median: b.pacedRate },
          requestMix: `${APPLY_EVERY - 1} GET /loans/{id} : 1 POST /loans`,
          redis: Boolean(process.env.REDIS_URL),
          cpus: CPU_COUNT,
          node: process.version,
          loadAverage: { start: loadStart, end: loadavg().map(round2) },
          durationSeconds: Math.round((Date.now() - startedAt) / 1000),
        },
        null,
        2,
      ),
    );
  } finally {
    await Promise.all(
      children.map(
        (c) =>
          new Promise((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve(undefined);
            c.once("exit", resolve);
            c.kill("SIGTERM");
          }),
      ),
    );
    await rm(work, { recursive: true, force: true });
    await db.drop();
  }
}

main().catch((err) => {
  console.error(err);
  for (const c of children) c.kill("SIGKILL");
  process.exit(1);
});
