import { RE2JS } from "re2js";
import { defaultBounds, type ScanBounds } from "./isolated-extract.js";
import type { ScanLimits } from "./limits.js";
import { type CodeMapping, defaultMapping } from "./mapping.js";
import type { RulesFile } from "./rules-file.js";

export type { RulesFile };

/** Patterns that betray internals in a message shown to customers: SQL, stack frames, JDBC, class names. */
export const defaultLeakPatterns = [
  "\\b(select\\s+.+\\s+from|insert\\s+into|update\\s+\\w+\\s+set|delete\\s+from)\\b",
  "\\bORA-\\d{5}\\b",
  "\\bSQLSTATE\\b",
  "\\bat\\s+[\\w$.]+\\([\\w$]+\\.java:\\d+\\)",
  "\\b(java|javax|jakarta|org\\.springframework)\\.[\\w.]+(Exception|Error)\\b",
  "\\bjdbc:\\w+:",
  "\\b\\w+Exception:",
];

/**
 * A rules file's or a request's pattern as validation matches it: by RE2, linear in the text whatever
 * the pattern. Validation runs on the service's event loop, where `^(A+)+$` against a 40-character code
 * froze a replica (no health check, no SIGTERM), and then every replica that took the scan over.
 */
export interface TextPattern {
  readonly source: string;
  test(text: string): boolean;
}

/** Validation rules as the validator uses them. */
export interface Rules {
  codePattern?: TextPattern;
  system?: string;
  allowedPrefixes?: Record<string, string[]>;
  messageRequired: boolean;
  messageMinLength: number;
  messageMaxLength: number;
  leakPatterns: TextPattern[];
  uniqueMessage: boolean;
  uniqueFamily: boolean;
  scripts: Array<{ name: string; source: string; timeLimitMs?: number }>;
}

export interface ResolvedConfig {
  bases: string[];
  rules: Rules;
  mapping: CodeMapping;
  limits: Partial<ScanLimits>;
  /** Heap and time of the scan's worker thread. */
  bounds: ScanBounds;
}

export class ConfigError extends Error {}

/** A pattern for validation (see TextPattern); refused with the reason when RE2 cannot read it (no lookarounds or backreferences). */
export function textPattern(source: string, what: string, caseInsensitive = false): TextPattern {
  let re: RE2JS;
  try {
    re = RE2JS.compile(source, caseInsensitive ? RE2JS.CASE_INSENSITIVE : 0);
  } catch (err) {
    throw new ConfigError(
      `${what} is not a valid regular expression (RE2 syntax: no lookarounds or backreferences): ${(err as Error).message}`,
    );
  }
  return { source, test: (text) => re.matcher(text).find() };
}

/** The mapping's code shape runs in the scan's worker thread, under its time limit: a JavaScript regular expression. */
function regex(source: string, what: string): RegExp {
  try {
    return new RegExp(source);
  } catch (err) {
    throw new ConfigError(`${what} is not a valid regular expression: ${(err as Error).message}`);
  }
}

/** Merges a rules file with command-line/API overrides into what the scan uses. */
export function resolveConfig(file: RulesFile, overrides: { bases?: string[]; codePattern?: string } = {}): ResolvedConfig {
  const bases = [...new Set([...(file.bases ?? []), ...(overrides.bases ?? [])])];
  const codePattern = overrides.codePattern ?? file.codePattern;
  const m = file.mapping ?? {};
  const { maxHeapMb, timeLimitMs, ...readLimits } = file.limits ?? {};
  return {
    bases,
    rules: {
      codePattern: codePattern === undefined ? undefined : textPattern(codePattern, "code pattern"),
      system: file.system,
      allowedPrefixes: file.allowedPrefixes,
      messageRequired: file.message?.required ?? true,
      messageMinLength: file.message?.minLength ?? 2,
      messageMaxLength: file.message?.maxLength ?? 200,
      leakPatterns: (file.message?.leakPatterns ?? defaultLeakPatterns).map((p) => textPattern(p, "leak pattern", true)),
      uniqueMessage: file.uniqueMessage ?? true,
      uniqueFamily: file.uniqueFamily ?? true,
      scripts: (file.scripts ?? []).map((s) => ({ name: s.name, source: s.source ?? "", timeLimitMs: s.timeLimitMs })),
    },
    mapping: {
      codeShape: m.codeShape ? regex(m.codeShape, "mapping.codeShape") : defaultMapping.codeShape,
      slots: m.slots ?? {},
      codeFields: m.codeFields ?? defaultMapping.codeFields,
      messageFields: m.messageFields ?? defaultMapping.messageFields,
    },
    limits: readLimits,
    bounds: { maxHeapMb: maxHeapMb ?? defaultBounds.maxHeapMb, timeLimitMs: timeLimitMs ?? defaultBounds.timeLimitMs },
  };
}
