import type { ScanReport } from "../scan.js";
import { toJunit } from "./junit.js";
import { toSarif } from "./sarif.js";
import { toTable } from "./table.js";

export const formats = ["json", "sarif", "junit", "table"] as const;
export type Format = (typeof formats)[number];

/** The report as the chosen output format. */
export function formatReport(report: ScanReport, format: Format, version: string): string {
  switch (format) {
    case "json":
      return `${JSON.stringify(report, null, 2)}\n`;
    case "sarif":
      return `${JSON.stringify(toSarif(report, version), null, 2)}\n`;
    case "junit":
      return toJunit(report);
    case "table":
      return toTable(report);
  }
}
