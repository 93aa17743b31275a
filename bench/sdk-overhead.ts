// @opsplane/sdk: what joining the platform costs a service. The loan demo (examples/demo-app,
// loans in memory, so the handler is cheap and the SDK's share as large as it gets) runs twice on
// this machine in this run: without the SDK (`--without-sdk`, the same handlers) and with it,
// joined to a real config-center (its own process, seeded: rate table, bank codes, and rules on
// the interfaces under load that evaluate on every request but never bite: a rate limit by TPS
// and by concurrency, a circuit breaker, an open route). The load comes from `wrk` (one thread,
// keep-alive, its own process): four queries (GET /loans/{id}) to one application (POST /loans).
// Per target and round: a throughput phase (BENCH_CONNECTIONS connections back to back for
// BENCH_SECONDS: requests/s at saturation, the app's CPU per request from /proc) and a latency
// phase (BENCH_RATE requests/s on a schedule: p50/p99 of a service that is not saturated). The
// targets alternate (baseline, SDK, baseline, SDK, …) for BENCH_ROUNDS short rounds so the
// machine's other load falls on both; the median of the rounds is reported. On a shared machine
// requests/s and p99 move with everyone else's load; the app's CPU time per request moves far less,
// so `cpuCostPct` is the steadier view of the same cost.
// Needs DATABASE_URL (config-center's), wrk (`apt-get install -y wrk`) and a built tree (`npx tsc -b`);
// REDIS_URL optional. BENCH_NODE_FLAGS passes flags to both apps' node (e.g. --cpu-prof, to compare where time goes).
//   npx tsx scripts/with-test-deps.ts npx tsx bench/sdk-overhead.ts
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { sha256Hex } from "@opsplane/platform";
import { createTestDatabase, eventually, freePort } from "@opsplane/testing";
import { demoAppId, seedDemo } from "../examples/demo-app/src/seed.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const RATE = Number(process.env.BENCH_RATE ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
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
  /** The loan every query reads. */
  loanPath: string;
}

async function startApp(name: Target["name"], centerUrl: string, snapshotDir: string): Promise<Target> {
  const port = await freePort();
  const main = "examples/demo-app/dist/main.js";
  const flags = process.env.BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? [];
  const child =
    name === "baseline"
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
  const res = await fetch(`${url}/loans`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ applicant: "bench", amount: 20000, termMonths: 24, bankCode: "104100000004" }),
  });
  if (res.status !== 201) throw new Error(`${name}: POST /loans answered ${res.status}: ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  return { name, url, pid: child.pid!, loanPath: `/loans/${id}` };
}

/** wrk's hooks: four queries, then one application; the summary as one JSON line. The paced part as in bench/dispatch.ts. */
const wrkScript = (paced: boolean) => `
local n, loanPath, every = 0
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
  loanPath, every = args[1], tonumber(args[2])
  ${paced ? "interval = 1000 / tonumber(args[3])" : ""}
end
function request()
  n = n + 1
  if n % every == 0 then return wrk.format("POST", "/loans", headers, applyBody) end
  return wrk.format("GET", loanPath)
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
    const child = spawn(WRK, args, { stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    child.stdout.on("data", (c: Buffer) => {
      text += c;
    });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}:\n${text}`))));
  });
  const json = /^WRK_JSON (.*)$/m.exec(out);
  if (!json) throw new Error(`wrk said:\n${out}`);
  const run = JSON.parse(json[1]!) as WrkRun;
  if (run.errors || run.statusErrors)
    throw new Error(`${t.name}: ${run.errors} socket errors, ${run.statusErrors} non-2xx answers: not a clean run`);
  return run;
}

/** CPU seconds (user + system) a process has used (Linux /proc). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

interface Round {
  rps: number;
  saturatedP99Ms: number;
  cpuUsPerRequest: number;
  p50Ms: number;
  p99Ms: number;
}

async function measure(t: Target, scripts: { closed: string; paced: string }): Promise<Round> {
  const cpuBefore = await cpuSeconds(t.pid);
  const sat = await wrk(scripts.closed, t, CONNECTIONS, SECONDS);
  const cpu = (await cpuSeconds(t.pid)) - cpuBefore;
  const paced = await wrk(scripts.paced, t, CONNECTIONS, SECONDS, RATE);
  return {
    rps: Math.round(sat.requests / (sat.durationUs / 1e6)),
    saturatedP99Ms: round3(sat.p99Us / 1000),
    cpuUsPerRequest: round2((cpu * 1e6) / sat.requests),
    p50Ms: round3(paced.p50Us / 1000),
    p99Ms: round3(paced.p99Us / 1000),
  };
}

async function main(): Promise<void> {
  try {
    execFileSync(WRK, ["--version"], { stdio: "ignore" });
  } catch (err) {
    // wrk --version exits 1 after printing its version; only a missing binary is a problem.
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${WRK} not found: apt-get install -y wrk (or set WRK_BIN)`);
  }
  const loadStart = loadavg().map(round2);
  const startedAt = Date.now();
  const db = await createTestDatabase();
  const work = await mkdtemp(path.join(tmpdir(), "sdk-overhead-"));
  try {
    const center = await startCenter(db.url);
    await seedDemo({ configUrl: center, adminKey, secret: appSecret, env: "dev", rules: benchRules });
    const baseline = await startApp("baseline", center, work);
    const sdk = await startApp("sdk", center, work);
    const online = await fetch(`${center}/config/v1/apps/${demoAppId}/instances?state=online`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    const { instances } = (await online.json()) as { instances: unknown[] };
    if (instances.length !== 1) throw new Error(`the SDK app is not online at config-center (${instances.length} online instances)`);

    const scripts = { closed: path.join(work, "closed.lua"), paced: path.join(work, "paced.lua") };
    await writeFile(scripts.closed, wrkScript(false));
    await writeFile(scripts.paced, wrkScript(true));
    // Warm-up: JIT, pools, the SDK's first reports of these interfaces.
    for (const t of [baseline, sdk]) await wrk(scripts.closed, t, CONNECTIONS, 2);

    const rounds: Record<Target["name"], Round[]> = { baseline: [], sdk: [] };
    for (let r = 0; r < ROUNDS; r++) for (const t of [baseline, sdk]) rounds[t.name].push(await measure(t, scripts));

    const summary = (name: Target["name"]) => {
      const rs = rounds[name];
      const pick = (k: keyof Round) => median(rs.map((x) => x[k]));
      return { rps: pick("rps"), p50: pick("p50Ms"), p99: pick("p99Ms"), satP99: pick("saturatedP99Ms"), cpu: pick("cpuUsPerRequest") };
    };
    const b = summary("baseline");
    const s = summary("sdk");
    const throughputCostPct = round2(((b.rps - s.rps) / b.rps) * 100);
    const cpuCostPct = round2(((s.cpu - b.cpu) / b.cpu) * 100);
    const addedP99Ms = round3(s.p99 - b.p99);
    console.log(
      JSON.stringify(
        {
          bench: "sdk-overhead",
          baselineRps: b.rps,
          sdkRps: s.rps,
          throughputCostPct,
          baselineP99Ms: b.p99,
          sdkP99Ms: s.p99,
          addedP99Ms,
          baselineP50Ms: b.p50,
          sdkP50Ms: s.p50,
          baselineSaturatedP99Ms: b.satP99,
          sdkSaturatedP99Ms: s.satP99,
          baselineCpuUsPerRequest: b.cpu,
          sdkCpuUsPerRequest: s.cpu,
          addedCpuUsPerRequest: round2(s.cpu - b.cpu),
          cpuCostPct,
          targetsMet: { throughputCostBelow5Pct: throughputCostPct < 5, addedP99Below0_2Ms: addedP99Ms < 0.2 },
          rounds: ROUNDS,
          order: "baseline, sdk, alternating; medians of the rounds",
          perRound: rounds,
          connections: CONNECTIONS,
          secondsPerPhase: SECONDS,
          pacedRate: RATE,
          requestMix: `${APPLY_EVERY - 1} GET /loans/{id} : 1 POST /loans`,
          redis: Boolean(process.env.REDIS_URL),
          cpus: cpus().length,
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
