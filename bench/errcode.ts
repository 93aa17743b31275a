// errcode-scanner against `jdeps -verbose:class` on real jars from Debian (Derby, H2, HSQLDB, the
// PostgreSQL driver; each skipped when its package is not installed). The CLI's full scan (read,
// codes, validation, JSON out) and jdeps of the same jar run as child processes under
// /usr/bin/time (wall clock, peak RSS), alternately, RUNS times each (default 3); the best of each
// is kept, so both see the same machine load. Recall and precision of the codes found are
// against ground truth from javap (services/errcode-scanner/test/support/real-jars.ts).
// BASELINE_CLI=<path to another build's dist/cli.js> times that build too, in the same run.
// Prints one JSON object.
//   npx tsc -b services/errcode-scanner && npx tsx bench/errcode.ts
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { installed, realJars, score, truthFor } from "../services/errcode-scanner/test/support/real-jars.js";

const cli = path.join(__dirname, "..", "services", "errcode-scanner", "dist", "cli.js");
const baselineCli = process.env.BASELINE_CLI;
const runs = Number(process.env.RUNS ?? 3);

interface Timing {
  ms: number;
  rssMiB: number;
}

/** Runs a command under /usr/bin/time: wall milliseconds and peak RSS in MiB. */
function timed(cmd: string, args: string[]): Timing {
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", cmd, ...args], { encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] });
  const [seconds, kb] = (r.stderr.trim().split("\n").pop() ?? "").split(" ").map(Number);
  // The scanner exits 1 when it finds violations (every real jar breaks the default rules).
  if (!Number.isFinite(seconds) || (r.status !== 0 && r.status !== 1)) throw new Error(`${cmd} failed: ${r.stderr.slice(-2000)}`);
  return { ms: Math.round(seconds * 1000), rssMiB: Math.round(kb / 1024) };
}

const fastest = (ts: Timing[]) => ts.reduce((a, b) => (b.ms < a.ms ? b : a));
const ratio = (a: number, b: number) => Number((a / b).toFixed(2));

function main(): void {
  if (!existsSync(cli)) throw new Error("build first: npx tsc -b services/errcode-scanner");
  const dir = mkdtempSync(path.join(tmpdir(), "errcode-bench-"));
  const loadBefore = loadavg()[0];
  const jars = [];
  try {
    for (const j of realJars.filter(installed)) {
      const jar = realpathSync(j.jar);
      const out = path.join(dir, `${j.name}.json`);
      const scan: Timing[] = [];
      const jdeps: Timing[] = [];
      const baseline: Timing[] = [];
      for (let i = 0; i < runs; i++) {
        scan.push(timed(process.execPath, [cli, jar, "--base", j.base, "--out", out]));
        // Multi-release jars (H2) are refused by jdeps without --multi-release; it is harmless on the others.
        jdeps.push(timed("jdeps", ["--multi-release", "17", "-verbose:class", jar]));
        if (baselineCli)
          baseline.push(timed(process.execPath, [baselineCli, jar, "--base", j.base, "--out", path.join(dir, "baseline.json")]));
      }
      const report = JSON.parse(readFileSync(out, "utf8")) as { errorCodes: Array<{ code: string }>; stats: { classes: number } };
      const s = score(
        truthFor(j),
        report.errorCodes.map((e) => e.code),
      );
      const [ours, theirs] = [fastest(scan), fastest(jdeps)];
      const before = baselineCli ? fastest(baseline) : undefined;
      jars.push({
        name: j.name,
        classes: report.stats.classes,
        scanMs: ours.ms,
        jdepsMs: theirs.ms,
        ratioToJdeps: ratio(ours.ms, theirs.ms),
        scanPeakRssMiB: ours.rssMiB,
        jdepsPeakRssMiB: theirs.rssMiB,
        ...(before && { baselineScanMs: before.ms, baselineRatioToJdeps: ratio(before.ms, theirs.ms), baselinePeakRssMiB: before.rssMiB }),
        truthCodes: s.truth,
        foundCodes: s.found,
        recall: s.recall,
        precision: s.precision,
        missed: s.missed.slice(0, 10),
        extra: s.extra.slice(0, 10),
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const loadAverage = [loadBefore, loadavg()[0]].map((l) => Number(l.toFixed(1)));
  process.stdout.write(`${JSON.stringify({ runs, loadAverage, jars }, null, 2)}\n`);
}

main();
