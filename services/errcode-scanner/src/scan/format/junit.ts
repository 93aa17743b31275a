import type { ScanReport } from "../scan.js";

const entities: Record<string, string> = { "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" };

/** XML attribute/text escaping; characters XML 1.0 cannot hold (C0 controls but tab/LF/CR) are dropped. */
function xml(s: string): string {
  let out = "";
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) continue;
    out += entities[ch] ?? ch;
  }
  return out;
}

/** JUnit XML for CI pipelines: one test case per error code, a failure per violation. */
export function toJunit(report: ScanReport): string {
  const cases = report.errorCodes.map((e) => {
    const failures = report.violations.filter((v) => v.code === e.code && v.exceptionClass === e.exceptionClass);
    const where = e.locations.map((l) => `${l.class}.${l.method}${l.line ? `:${l.line}` : ""} (${l.artifact})`).join("\n");
    const body = failures.map((f) => `      <failure type="${xml(f.rule)}" message="${xml(f.message)}">${xml(where)}</failure>`).join("\n");
    const name = `${e.code} ${e.message ?? `<${e.messageKind} message>`}`;
    return `    <testcase classname="${xml(e.exceptionClass)}" name="${xml(name)}"${body ? `>\n${body}\n    </testcase>` : " />"}`;
  });
  const problems = report.problems.map(
    (p) =>
      `    <testcase classname="artifact" name="${xml(p.entry)}">\n      <error type="malformed-class" message="${xml(p.message)}" />\n    </testcase>`,
  );
  const failed = new Set(report.violations.map((v) => `${v.code}\u0000${v.exceptionClass}`));
  const failures = report.errorCodes.filter((e) => failed.has(`${e.code}\u0000${e.exceptionClass}`)).length;
  const tests = cases.length + problems.length;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<testsuites name="errcode-scan" tests="${tests}" failures="${failures}" errors="${problems.length}">`,
    `  <testsuite name="${xml(report.artifact)}" tests="${tests}" failures="${failures}" errors="${problems.length}" time="${(report.stats.durationMs / 1000).toFixed(3)}">`,
    ...cases,
    ...problems,
    "  </testsuite>",
    "</testsuites>",
    "",
  ].join("\n");
}
