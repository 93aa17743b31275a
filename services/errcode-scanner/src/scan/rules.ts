import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { type CodeMapping, defaultMapping } from "./extract.js";
import type { ScanLimits } from "./limits.js";

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

const scriptRule = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "rule names are lower-case words joined by hyphens"),
  source: z.string().optional(),
  file: z.string().optional(),
  timeLimitMs: z.number().int().positive().max(10_000).optional(),
});

/** The rules file (`--rules`, JSON); every field is optional. */
export const rulesFileSchema = z.strictObject({
  bases: z.array(z.string()).optional(),
  codePattern: z.string().optional(),
  system: z.string().optional(),
  allowedPrefixes: z.record(z.string(), z.array(z.string().min(1))).optional(),
  message: z
    .strictObject({
      required: z.boolean().optional(),
      minLength: z.number().int().nonnegative().optional(),
      maxLength: z.number().int().positive().optional(),
      leakPatterns: z.array(z.string()).optional(),
    })
    .optional(),
  uniqueMessage: z.boolean().optional(),
  uniqueFamily: z.boolean().optional(),
  mapping: z
    .strictObject({
      codeShape: z.string().optional(),
      slots: z
        .record(
          z.string(),
          z.record(
            z.string(),
            z.strictObject({ code: z.number().int().nonnegative().optional(), message: z.number().int().nonnegative().optional() }),
          ),
        )
        .optional(),
      codeFields: z.array(z.string()).optional(),
      messageFields: z.array(z.string()).optional(),
    })
    .optional(),
  scripts: z.array(scriptRule).optional(),
  limits: z
    .strictObject({
      maxEntries: z.number().int().positive().optional(),
      maxTotalInflatedBytes: z.number().int().positive().optional(),
      maxClassBytes: z.number().int().positive().optional(),
      maxNestedArchiveBytes: z.number().int().positive().optional(),
      maxNestingDepth: z.number().int().nonnegative().optional(),
      maxCompressionRatio: z.number().positive().optional(),
    })
    .optional(),
});
export type RulesFile = z.infer<typeof rulesFileSchema>;

/** Validation rules as the validator uses them. */
export interface Rules {
  codePattern?: RegExp;
  system?: string;
  allowedPrefixes?: Record<string, string[]>;
  messageRequired: boolean;
  messageMinLength: number;
  messageMaxLength: number;
  leakPatterns: RegExp[];
  uniqueMessage: boolean;
  uniqueFamily: boolean;
  scripts: Array<{ name: string; source: string; timeLimitMs?: number }>;
}

export interface ResolvedConfig {
  bases: string[];
  rules: Rules;
  mapping: CodeMapping;
  limits: Partial<ScanLimits>;
}

export class ConfigError extends Error {}

function regex(source: string, what: string): RegExp {
  try {
    return new RegExp(source);
  } catch (err) {
    throw new ConfigError(`${what} is not a valid regular expression: ${(err as Error).message}`);
  }
}

/** Reads and checks a rules file; script files are read relative to it. */
export async function loadRulesFile(file: string): Promise<RulesFile> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    throw new ConfigError(`rules file ${file}: ${(err as Error).message}`);
  }
  const parsed = rulesFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`rules file ${file}: ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  for (const s of parsed.data.scripts ?? []) {
    if (!s.source && !s.file) throw new ConfigError(`rules file ${file}: script ${s.name} needs "source" or "file"`);
    if (!s.source && s.file) s.source = await readFile(path.resolve(path.dirname(file), s.file), "utf8");
  }
  return parsed.data;
}

/** Merges a rules file with command-line/API overrides into what the scan uses. */
export function resolveConfig(file: RulesFile, overrides: { bases?: string[]; codePattern?: string } = {}): ResolvedConfig {
  const bases = [...new Set([...(file.bases ?? []), ...(overrides.bases ?? [])])];
  const codePattern = overrides.codePattern ?? file.codePattern;
  const m = file.mapping ?? {};
  return {
    bases,
    rules: {
      codePattern: codePattern === undefined ? undefined : regex(codePattern, "code pattern"),
      system: file.system,
      allowedPrefixes: file.allowedPrefixes,
      messageRequired: file.message?.required ?? true,
      messageMinLength: file.message?.minLength ?? 2,
      messageMaxLength: file.message?.maxLength ?? 200,
      leakPatterns: (file.message?.leakPatterns ?? defaultLeakPatterns).map((p) => new RegExp(regex(p, "leak pattern").source, "i")),
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
    limits: file.limits ?? {},
  };
}
