import type { ScanReport } from "../scan.js";

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** A terminal table: the codes, then the violations, then the totals. */
export function toTable(report: ScanReport): string {
  const flagged = new Map<string, number>();
  for (const v of report.violations)
    flagged.set(`${v.code}\u0000${v.exceptionClass}`, (flagged.get(`${v.code}\u0000${v.exceptionClass}`) ?? 0) + 1);
  const codes = table([
    ["CODE", "MESSAGE", "EXCEPTION", "SITES", "VIOLATIONS"],
    ...report.errorCodes.map((e) => [
      e.code,
      cut(e.message ?? `<${e.messageKind}>`, 50),
      e.exceptionClass.split(".").pop() ?? e.exceptionClass,
      String(e.locations.length),
      String(flagged.get(`${e.code}\u0000${e.exceptionClass}`) ?? 0),
    ]),
  ]);
  const violations = report.violations.length
    ? table([
        ["CODE", "RULE", "WHERE", "PROBLEM"],
        ...report.violations.map((v) => [v.code, v.rule, whereOf(v.locations[0]), cut(v.message, 90)]),
      ])
    : "no violations";
  const s = report.stats;
  return [
    codes,
    "",
    violations,
    "",
    `${s.distinctCodes} codes (${s.errorCodes} code/message/class entries), ${s.dynamicSites} dynamic sites, ${s.violations} violations, ` +
      `${s.classes} classes in ${s.containers} containers, ${s.malformedClasses} malformed, ${s.durationMs} ms`,
    "",
  ].join("\n");
}

function whereOf(l: { class: string; method: string; line?: number } | undefined): string {
  return l ? `${l.class.split(".").pop()}.${l.method.split("(")[0]}${l.line ? `:${l.line}` : ""}` : "";
}
