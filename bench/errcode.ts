// errcode-scanner: classes per second and peak RSS of a full scan (tables, codes, validation)
// of a generated Spring Boot fat jar of 20,000 classes in 50 nested jars, against the JDK's
// `jdeps -verbose:class` (class-level dependency analysis) of the same classes in the same run.
// Both run as child processes timed by /usr/bin/time (wall clock, peak RSS). The artifact is
// generated once (javac, in batches) and cached under .data/bench/.
// Prints one JSON object.   npx tsc -b services/errcode-scanner && npx tsx bench/errcode.ts
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { entriesOf } from "../services/errcode-scanner/test/support/java.js";
import { writeZip } from "../services/errcode-scanner/test/support/zip-writer.js";

const MODULES = 50;
const CLASSES_PER_MODULE = 400;
const CODES_PER_MODULE = 10;
const root = path.join(__dirname, "..", ".data", "bench", "errcode");
const fatJar = path.join(root, `boot-${MODULES * CLASSES_PER_MODULE}.jar`);
const libDir = path.join(root, "lib");
const cli = path.join(__dirname, "..", "services", "errcode-scanner", "dist", "cli.js");

function write(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
}

/** Java sources: a base exception, and per module an exception, an enum of codes and services. */
function generateSources(src: string): void {
  write(
    path.join(src, "bench/core/BaseException.java"),
    `package bench.core;
public class BaseException extends RuntimeException {
  private final String code;
  public BaseException(String code, String message) { super(message); this.code = code; }
  public String getCode() { return code; }
}
`,
  );
  for (let m = 0; m < MODULES; m++) {
    const pkg = `bench.m${m}`;
    const dir = path.join(src, "bench", `m${m}`);
    const code = (i: number) => `M${String(m).padStart(2, "0")}${String(i).padStart(4, "0")}`;
    write(
      path.join(dir, "ModuleException.java"),
      `package ${pkg};
public class ModuleException extends bench.core.BaseException {
  public ModuleException(String code, String message) { super(code, message); }
  public ModuleException(Codes c) { this(c.code(), c.message()); }
}
`,
    );
    const constants = Array.from({ length: CODES_PER_MODULE }, (_, i) => `  C${i}("${code(i)}", "Module ${m} failure ${i}")`).join(",\n");
    write(
      path.join(dir, "Codes.java"),
      `package ${pkg};
public enum Codes {
${constants};
  private final String code;
  private final String message;
  Codes(String code, String message) { this.code = code; this.message = message; }
  public String code() { return code; }
  public String message() { return message; }
}
`,
    );
    for (let k = 0; k < CLASSES_PER_MODULE - 2; k++) {
      const literal = code(100 + (k % 50));
      write(
        path.join(dir, `Service${k}.java`),
        `package ${pkg};
import java.util.ArrayList;
import java.util.List;
public class Service${k} {
  private final List<String> items = new ArrayList<>();
  public void check(int amount) {
    if (amount < 0) throw new ModuleException("${literal}", "Amount ${k % 50} is negative");
    if (amount > 1000) throw new ModuleException(Codes.C${k % CODES_PER_MODULE});
    items.add("amount " + amount);
  }
  public int total() {
    int sum = 0;
    for (String s : items) sum += s.length();
    items.forEach(s -> System.out.println(s));
    return sum;
  }
  public String describe() { return "Service${k} with " + items.size() + " items"; }
}
`,
      );
    }
  }
}

function buildArtifact(): void {
  const src = path.join(root, "src");
  const classes = path.join(root, "classes");
  rmSync(root, { recursive: true, force: true });
  generateSources(src);
  const all = (dir: string) =>
    readdirSync(dir, { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".java"))
      .map((f) => path.join(dir, f));
  execFileSync("javac", ["--release", "17", "-nowarn", "-d", classes, ...all(path.join(src, "bench", "core"))]);
  // Ten modules per javac call: fewer JVM start-ups, bounded command lines.
  for (let m = 0; m < MODULES; m += 10) {
    const files = Array.from({ length: Math.min(10, MODULES - m) }, (_, i) => all(path.join(src, "bench", `m${m + i}`))).flat();
    execFileSync("javac", ["--release", "17", "-nowarn", "-cp", classes, "-d", classes, ...files], { maxBuffer: 64 * 1024 * 1024 });
  }
  mkdirSync(libDir, { recursive: true });
  const nested = [];
  for (let m = 0; m < MODULES; m++) {
    const jar = writeZip(entriesOf(path.join(classes, "bench", `m${m}`), `bench/m${m}/`));
    writeFileSync(path.join(libDir, `module-${m}.jar`), jar);
    nested.push({ name: `BOOT-INF/lib/module-${m}.jar`, data: jar, store: true });
  }
  writeFileSync(
    fatJar,
    writeZip([
      {
        name: "META-INF/MANIFEST.MF",
        data: Buffer.from("Manifest-Version: 1.0\nMain-Class: org.springframework.boot.loader.JarLauncher\n"),
      },
      ...entriesOf(path.join(classes, "bench", "core"), "BOOT-INF/classes/bench/core/"),
      ...nested,
    ]),
  );
  rmSync(src, { recursive: true, force: true });
}

/** Runs a command under /usr/bin/time: wall seconds and peak RSS in bytes. */
function timed(cmd: string, args: string[]): { seconds: number; peakRssBytes: number; status: number | null } {
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", cmd, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "ignore", "pipe"],
    maxBuffer: 512 * 1024 * 1024,
  });
  const last = r.stderr.trim().split("\n").pop() ?? "";
  const [seconds, kb] = last.split(" ").map(Number);
  if (!Number.isFinite(seconds)) throw new Error(`${cmd} failed: ${r.stderr.slice(-2000)}`);
  return { seconds, peakRssBytes: kb * 1024, status: r.status };
}

function main(): void {
  if (!existsSync(cli)) throw new Error("build first: npx tsc -b services/errcode-scanner");
  const cached = existsSync(fatJar);
  const genStart = performance.now();
  if (!cached) buildArtifact();
  const generationSeconds = (performance.now() - genStart) / 1000;

  const out = path.join(root, "scan.json");
  const ours = timed(process.execPath, [
    cli,
    fatJar,
    "--base",
    "bench.core.BaseException",
    "--code-pattern",
    "^M\\d{6}$",
    "--format",
    "json",
    "--out",
    out,
  ]);
  const report = JSON.parse(readFileSync(out, "utf8")) as { stats: Record<string, number> };
  const classes = report.stats.classes;
  // jdeps does not open nested jars: it gets the 50 module jars and the core classes directly.
  const jars = readdirSync(libDir).map((f) => path.join(libDir, f));
  const jdeps = timed("jdeps", ["-verbose:class", "-cp", path.join(root, "classes"), ...jars]);

  process.stdout.write(
    `${JSON.stringify(
      {
        artifact: {
          file: path.relative(process.cwd(), fatJar),
          bytes: readFileSync(fatJar).length,
          nestedJars: MODULES,
          classes,
          cached,
          generationSeconds: cached ? undefined : Math.round(generationSeconds),
        },
        errcodeScan: {
          wallSeconds: ours.seconds,
          classesPerSecond: Math.round(classes / ours.seconds),
          peakRssMiB: Math.round(ours.peakRssBytes / 1024 / 1024),
          inProcessMs: report.stats.durationMs,
          errorCodes: report.stats.errorCodes,
          distinctCodes: report.stats.distinctCodes,
          violations: report.stats.violations,
          exitStatus: ours.status,
        },
        jdepsVerboseClass: {
          wallSeconds: jdeps.seconds,
          classesPerSecond: Math.round(classes / jdeps.seconds),
          peakRssMiB: Math.round(jdeps.peakRssBytes / 1024 / 1024),
          exitStatus: jdeps.status,
        },
        oursOverJdepsSpeed: Number((jdeps.seconds / ours.seconds).toFixed(2)),
        targetMet: ours.seconds <= jdeps.seconds && ours.peakRssBytes < 1024 ** 3,
      },
      null,
      2,
    )}\n`,
  );
}

main();
