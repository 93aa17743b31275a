// How long script calls wait behind runaway ones in libs/sandbox: per round, three calls of a script
// allocating 100 KB strings without end (16 MiB memory limit, a time limit out of reach, so the memory
// limit stops them) and one well-behaved call queued behind them, all on one worker, as the callback
// dispatcher's memory-hungry test sends them. The floor is the well-behaved call with nothing ahead.
// Rounds run one after another on the same worker, so anything a runaway call leaves behind shows in
// the rounds after it. BENCH_SANDBOX_DIST=<dir> measures another build of libs/sandbox/dist (A/B).
// Prints one JSON object.   npx tsx bench/sandbox-runaways.ts
import { loadavg } from "node:os";
import path from "node:path";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const dist = path.resolve(process.env.BENCH_SANDBOX_DIST ?? path.join(__dirname, "..", "libs", "sandbox", "dist"));

type Sandbox = typeof import("@opsplane/sandbox");

const round2 = (n: number) => Math.round(n * 100) / 100;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const { createSandbox } = (await import(path.join(dist, "index.js"))) as Sandbox;
  const loadStart = loadavg().map(round2);
  const sandbox = await createSandbox({ workers: 1 });
  const source = "function main(hungry) { if (hungry) { const a = []; for (;;) a.push('x'.repeat(1e5)); } return 'ok' }";
  const script = await sandbox.compile(source, { memoryLimitBytes: 16 * 1024 * 1024, timeLimitMs: 60_000 });
  const timed = async (call: Promise<unknown>) => {
    const started = performance.now();
    const outcome = await call.then(
      () => "ok",
      (err: { kind?: string }) => err.kind ?? "error",
    );
    return { ms: performance.now() - started, outcome };
  };
  const floor: number[] = [];
  const rounds: Array<{ runawaysMs: number[]; goodWaitedMs: number }> = [];
  for (let i = 0; i < ROUNDS; i++) {
    floor.push((await timed(script.call(false))).ms);
    const runaways = [0, 1, 2].map(() => timed(script.call(true)));
    const good = timed(script.call(false));
    const ran = await Promise.all(runaways);
    if (ran.some((r) => r.outcome !== "memory")) throw new Error(`a runaway call ended ${ran.map((r) => r.outcome).join(", ")}`);
    const behind = await good;
    if (behind.outcome !== "ok") throw new Error(`the well-behaved call ended ${behind.outcome}`);
    // Each runaway's own time: the one before it finished when it started.
    const runawaysMs = ran.map((r, k) => round2(k === 0 ? r.ms : r.ms - ran[k - 1]!.ms));
    rounds.push({ runawaysMs, goodWaitedMs: round2(behind.ms) });
  }
  await sandbox.close();
  const waited = rounds.map((r) => r.goodWaitedMs);
  console.log(
    JSON.stringify({
      node: process.version,
      sandboxDist: dist,
      rounds,
      goodWaitedMs: { median: median(waited), max: Math.max(...waited), firstRound: waited[0], lastRound: waited.at(-1) },
      floorMs: round2(median(floor)),
      loadAverage: { start: loadStart, end: loadavg().map(round2) },
    }),
  );
}

void main();
