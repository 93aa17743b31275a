import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { writeZip, type ZipEntryInput } from "./zip-writer.js";

const fixtures = path.join(__dirname, "..", "fixtures");

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".java"))
    .map((f) => path.join(dir, f));
}

export interface CompiledFixtures {
  root: string;
  /** Classes compiled with --release 8 (the base classes, enums, factories, services). */
  java8: string;
  /** Classes compiled with --release 17 (records, sealed interfaces, pattern matching). */
  java17: string;
  cleanup(): void;
}

/** Compiles the Java fixtures into a temp dir: one javac call per release. */
export function compileFixtures(): CompiledFixtures {
  const root = mkdtempSync(path.join(tmpdir(), "errcode-fixtures-"));
  const java8 = path.join(root, "java8");
  const java17 = path.join(root, "java17");
  execFileSync("javac", ["--release", "8", "-nowarn", "-d", java8, ...sources(path.join(fixtures, "java8"))]);
  execFileSync("javac", ["--release", "17", "-nowarn", "-cp", java8, "-d", java17, ...sources(path.join(fixtures, "java17"))]);
  return { root, java8, java17, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Compiles Java sources given as text (`{"poison/Failure.java": "…"}`) into a temp dir. */
export function compileJava(files: Record<string, string>, release = "8"): { dir: string; cleanup(): void } {
  const root = mkdtempSync(path.join(tmpdir(), "errcode-java-"));
  const src = path.join(root, "src");
  const paths = Object.entries(files).map(([name, text]) => {
    const file = path.join(src, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
    return file;
  });
  const dir = path.join(root, "classes");
  execFileSync("javac", ["--release", release, "-nowarn", "-d", dir, ...paths]);
  return { dir, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Every file under `dir` as zip entries, names relative to it and prefixed. */
export function entriesOf(dir: string, prefix = ""): ZipEntryInput[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => statSync(path.join(dir, f)).isFile())
    .sort()
    .map((f) => ({ name: `${prefix}${f.split(path.sep).join("/")}`, data: readFileSync(path.join(dir, f)) }));
}

export function jarOf(...dirs: Array<{ dir: string; prefix?: string }>): Buffer {
  return writeZip(dirs.flatMap((d) => entriesOf(d.dir, d.prefix)));
}

/** Runs the JDK's `jar` tool (to check our reader on archives it writes). */
export function jarTool(args: string[]): void {
  execFileSync("jar", args);
}
