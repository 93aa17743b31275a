import type { Location } from "../extract.js";
import type { ScanReport } from "../scan.js";

/** Rules for what was not checked, beside the violations: reviewers see the gaps too. */
const NOT_STATIC = "code-not-static";
const MALFORMED = "malformed-class";
const levels: Record<string, "error" | "warning" | "note"> = { [NOT_STATIC]: "note", [MALFORMED]: "warning" };

const ruleText: Record<string, string> = {
  "code-pattern": "Error code does not match the house code pattern",
  "code-prefix": "Error code does not start with a prefix allowed for the system",
  "message-required": "Error code is thrown without a message",
  "message-length": "Error message is too short or too long",
  "message-leak": "Error message exposes internals (SQL, stack traces, class names)",
  "code-multiple-messages": "One error code has more than one message",
  "code-multiple-families": "One error code is thrown by more than one exception family",
  "registry-conflict": "Error code conflicts with the compliant registry",
  [NOT_STATIC]: "Exception built with a code that is not statically known: not checked",
  [MALFORMED]: "Class file that could not be read: not scanned",
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

/** The class file's path inside its archive (`a/B.class` for `app.jar!/lib/x.jar!/a/B.class`). */
const entryPath = (entry: string) => entry.slice(entry.lastIndexOf("!/") + 2);

/**
 * SARIF 2.1.0 for code-scanning UIs: one result per violation (`error`), per construction site whose
 * code is not statically known (`note`) and per class file that could not be read (`warning`);
 * the reasons the scan checked nothing, if any, as notifications of the run.
 */
export function toSarif(report: ScanReport, version: string): object {
  const ruleIds: string[] = [...new Set(report.violations.map((v) => v.rule))].sort();
  if (report.dynamicSites.length) ruleIds.push(NOT_STATIC);
  if (report.problems.length) ruleIds.push(MALFORMED);
  const violations = report.violations.map((v) => ({
    ruleId: v.rule,
    ruleIndex: ruleIds.indexOf(v.rule),
    level: "error",
    message: { text: v.message },
    locations: v.locations.slice(0, 1).map(sarifLocation),
    relatedLocations: v.locations.slice(1).map((l, i) => ({ id: i + 1, ...sarifLocation(l) })),
    partialFingerprints: { "errcodeRuleCodeClass/v1": `${v.rule}:${v.code}:${v.exceptionClass}` },
    properties: { code: v.code, exceptionClass: v.exceptionClass },
  }));
  const dynamic = report.dynamicSites.map((d) => ({
    ruleId: NOT_STATIC,
    ruleIndex: ruleIds.indexOf(NOT_STATIC),
    level: "note",
    message: {
      text:
        d.reason === "no code argument"
          ? `${d.exceptionClass} is built without a code argument: not checked`
          : `${d.exceptionClass} is built with a code that is not statically known: not checked`,
    },
    locations: [sarifLocation(d.location)],
    partialFingerprints: { "errcodeSiteClass/v1": `${NOT_STATIC}:${d.location.class}.${d.location.method}:${d.exceptionClass}` },
    properties: { exceptionClass: d.exceptionClass, reason: d.reason },
  }));
  const malformed = report.problems.map((p) => ({
    ruleId: MALFORMED,
    ruleIndex: ruleIds.indexOf(MALFORMED),
    level: "warning",
    message: { text: `${p.entry} was not scanned: ${p.message}` },
    locations: [{ physicalLocation: { artifactLocation: { uri: entryPath(p.entry) } }, properties: { artifactEntry: p.entry } }],
    partialFingerprints: { "errcodeEntry/v1": `${MALFORMED}:${p.entry}` },
  }));
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
              defaultConfiguration: { level: levels[id] ?? "error" },
            })),
          },
        },
        invocations: [
          {
            executionSuccessful: true,
            toolExecutionNotifications: report.notChecked.map((text) => ({ level: "warning", message: { text: `not checked: ${text}` } })),
          },
        ],
        artifacts: [{ location: { uri: report.artifact } }],
        results: [...violations, ...dynamic, ...malformed],
      },
    ],
  };
}
