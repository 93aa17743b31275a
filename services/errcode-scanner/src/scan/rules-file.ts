// The rules file's format, checked with zod. Kept apart from rules.ts so that a scan without a
// rules file (the usual CLI run) does not load zod at all.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { ConfigError } from "./rules.js";

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
      maxHeapMb: z.number().int().min(32).optional(),
      timeLimitMs: z.number().int().min(1000).optional(),
    })
    .optional(),
});
export type RulesFile = z.infer<typeof rulesFileSchema>;

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
