import type { Location } from "../extract.js";
import type { ScanReport } from "../scan.js";

const ruleText: Record<string, string> = {
  "code-pattern": "Error code does not match the house code pattern",
  "code-prefix": "Error code does not start with a prefix allowed for the system",
  "message-required": "Error code is thrown without a message",
  "message-length": "Error message is too short or too long",
  "message-leak": "Error message exposes internals (SQL, stack traces, class names)",
  "code-multiple-messages": "One error code has more than one message",
  "code-multiple-families": "One error code is thrown by more than one exception family",
  "registry-conflict": "Error code conflicts with the compliant registry",
};

/** The source file a class most likely came from (outer class, package path). */
export function sourcePath(className: string): string {
  return `${className.split("$")[0].replace(/\./g, "/")}.java`;
}

function sarifLocation(l: Location) {
  return {
    physicalLocation: { artifactLocation: { uri: sourcePath(l.class) }, ...(l.line ? { region: { startLine: l.line } } : {}) },
    logicalLocations: [{ fullyQualifiedName: `${l.class}.${l.method.split("(")[0]}`, kind: "function" }],
    properties: { artifactEntry: l.artifact, method: l.method },
  };
}

/** SARIF 2.1.0, one result per violation, for code-scanning UIs. */
export function toSarif(report: ScanReport, version: string): object {
  const ruleIds = [...new Set(report.violations.map((v) => v.rule))].sort();
  return {
    $schema: "https://json.schemastore.org/sarif-2.1.0.json",
    version: "2.1.0",
    runs: [
      {
        tool: {
          driver: {
            name: "errcode-scan",
            version,
            rules: ruleIds.map((id) => ({
              id,
              shortDescription: { text: ruleText[id] ?? `Custom rule ${id.replace(/^script:/, "")}` },
              defaultConfiguration: { level: "error" },
            })),
          },
        },
        artifacts: [{ location: { uri: report.artifact } }],
        results: report.violations.map((v) => ({
          ruleId: v.rule,
          ruleIndex: ruleIds.indexOf(v.rule),
          level: "error",
          message: { text: v.message },
          locations: v.locations.slice(0, 1).map(sarifLocation),
          relatedLocations: v.locations.slice(1).map((l, i) => ({ id: i + 1, ...sarifLocation(l) })),
          partialFingerprints: { "errcodeRuleCodeClass/v1": `${v.rule}:${v.code}:${v.exceptionClass}` },
          properties: { code: v.code, exceptionClass: v.exceptionClass },
        })),
      },
    ],
  };
}
