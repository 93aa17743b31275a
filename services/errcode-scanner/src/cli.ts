#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { setFlagsFromString } from "node:v8";
import { type Format, formatReport, formats } from "./scan/format/index.js";
import { ScanBoundsError } from "./scan/isolated-extract.js";
import { ArtifactError } from "./scan/limits.js";
import { ConfigError, resolveConfig } from "./scan/rules.js";
import { scan } from "./scan/scan.js";
import type { RegistryEntry } from "./scan/validate.js";

const usage = `usage: errcode-scan <artifact> --base <FQN> [--base <FQN> …] [options]

  <artifact>               jar, war, ear, zip, or a directory of classes
  --base <FQN>             base exception class (repeatable; also "bases" in the rules file)
  --code-pattern <regex>   house format every code must match
  --rules <file>           rules file (JSON; see the README)
  --registry <file|url>    compliant registry: a JSON file, or the service's base URL
                           (ERRCODE_API_KEY is sent as a bearer token)
  --write-registry         add codes that pass to the registry file
  --format <f>             json (default), sarif, junit or table
  --out <file>             write there instead of standard output

exit status: 0 no violations, 1 violations, 2 bad input (a zip bomb, or a scan past its heap or time
             limit), 3 nothing really checked: no class file could be read, or a base has
             subclasses but no code was found under it (the reason is printed)`;

/** Class files skipped are named one a line up to this many; the report lists them all. */
const MAX_PROBLEM_LINES = 20;

/** Thrown for anything the caller got wrong: exit status 2. */
class UsageError extends Error {}

async function loadRegistry(source: string | undefined): Promise<RegistryEntry[]> {
  if (!source) return [];
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(`${source.replace(/\/$/, "")}/ops.v1.ErrcodeScanService/QueryRegistry`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(process.env.ERRCODE_API_KEY ? { authorization: `Bearer ${process.env.ERRCODE_API_KEY}` } : {}),
      },
      body: JSON.stringify({ limit: 100000 }),
    }).catch((err: Error) => {
      throw new UsageError(`registry ${source}: ${err.message}`);
    });
    if (!res.ok) throw new UsageError(`registry ${source}: HTTP ${res.status}`);
    const body = (await res.json()) as { entries?: Array<{ code: string; message?: string; exceptionFamily?: string }> };
    return (body.entries ?? []).map((e) => ({ code: e.code, message: e.message ?? null, exceptionFamily: e.exceptionFamily ?? "" }));
  }
  let json: unknown;
  try {
    json = JSON.parse(await readFile(source, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new UsageError(`registry ${source}: ${(err as Error).message}`);
  }
  const list = Array.isArray(json) ? json : (json as { entries?: unknown }).entries;
  if (!Array.isArray(list) || !list.every((e) => typeof e?.code === "string"))
    throw new UsageError(`registry ${source}: expected an array of {code, message, exceptionFamily}`);
  return list.map((e: { code: string; message?: string | null; exceptionFamily?: string }) => ({
    code: e.code,
    message: e.message ?? null,
    exceptionFamily: e.exceptionFamily ?? "",
  }));
}

export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    process.stderr.write(`errcode-scan: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  try {
    if (positionals.length !== 1) throw new UsageError("exactly one artifact is required");
    const format = (values.format ?? "json") as Format;
    if (!formats.includes(format)) throw new UsageError(`unknown format ${format} (${formats.join(", ")})`);
    // The rules file's schema (zod) is loaded only when there is one: most runs have none.
    const file = values.rules ? await (await import("./scan/rules-file.js")).loadRulesFile(values.rules) : {};
    const config = resolveConfig(file, { bases: values.base, codePattern: values["code-pattern"] });
    if (!config.bases.length) throw new UsageError("at least one --base class is required");
    if (values["write-registry"] && (!values.registry || /^https?:/.test(values.registry)))
      throw new UsageError("--write-registry needs --registry <file>");
    const registry = await loadRegistry(values.registry);
    const artifact = positionals[0];
    const report = await scan(artifact, path.basename(artifact), config, registry, {}, config.bounds);
    const output = formatReport(report, format, version());
    if (values.out) await writeFile(values.out, output);
    else process.stdout.write(output);
    for (const p of report.problems.slice(0, MAX_PROBLEM_LINES)) process.stderr.write(`errcode-scan: skipped ${p.entry}: ${p.message}\n`);
    if (report.problems.length > MAX_PROBLEM_LINES)
      process.stderr.write(
        `errcode-scan: skipped ${report.problems.length - MAX_PROBLEM_LINES} more class files (all in the report's problems)\n`,
      );
    if (report.notChecked.length) process.stderr.write(`errcode-scan: not checked: ${report.notChecked.join("; ")}\n`);
    for (const base of report.basesNotFound)
      process.stderr.write(`errcode-scan: warning: nothing in the artifact is or extends base ${base}: check its name\n`);
    if (values["write-registry"] && values.registry && report.registryAdditions.length)
      await writeFile(values.registry, `${JSON.stringify([...registry, ...report.registryAdditions], null, 2)}\n`);
    return report.violations.length ? 1 : report.notChecked.length ? 3 : 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError || err instanceof ArtifactError || err instanceof ScanBoundsError) {
      process.stderr.write(`errcode-scan: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      base: { type: "string", multiple: true },
      "code-pattern": { type: "string" },
      rules: { type: "string" },
      registry: { type: "string" },
      "write-registry": { type: "boolean" },
      format: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

function version(): string {
  return (JSON.parse(readFileSync(path.join(__dirname, "..", "package.json"), "utf8")) as { version: string }).version;
}

if (require.main === module) {
  // A scan is a second or two of code V8 has not seen yet. Compiled without inlining, its hot
  // functions are optimised sooner and V8's compiler threads use about half the CPU they would,
  // a fifth of the whole scan's (measured on Derby, H2 and HSQLDB). The flag is process-wide and
  // set before the scan's worker thread starts: the CLI sets it, the service (a long-lived
  // process) does not.
  setFlagsFromString("--no-turbo-inlining");
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: Error) => {
      process.stderr.write(`errcode-scan: ${err.stack ?? err.message}\n`);
      process.exitCode = 2;
    },
  );
}
