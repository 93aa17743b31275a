import { type DynamicSite, type ErrorCodeEntry, extractErrorCodes, type Problem, type ScanOptions } from "./engine.js";
import type { ResolvedConfig } from "./rules.js";
import { createScriptRunner } from "./script-rules.js";
import { type RegistryEntry, type Violation, validate } from "./validate.js";

/** Everything one scan produces: the CLI's JSON output and what the service stores. */
export interface ScanReport {
  artifact: string;
  bases: string[];
  errorCodes: ErrorCodeEntry[];
  violations: Violation[];
  dynamicSites: DynamicSite[];
  exceptionClasses: string[];
  problems: Problem[];
  /** Codes that passed every rule, to be added to the compliant registry. */
  registryAdditions: RegistryEntry[];
  stats: {
    containers: number;
    classes: number;
    methods: number;
    exceptionClasses: number;
    constructionSites: number;
    errorCodes: number;
    distinctCodes: number;
    dynamicSites: number;
    malformedClasses: number;
    alreadyCompliant: number;
    violations: number;
    violationsByRule: Record<string, number>;
    durationMs: number;
    classesPerSecond: number;
  };
}

/** Reads, extracts and validates: the whole pipeline, with no database. */
export async function scan(
  artifact: string,
  artifactName: string,
  config: ResolvedConfig,
  registry: readonly RegistryEntry[],
  hooks: Pick<ScanOptions, "onClass" | "onContainer"> = {},
): Promise<ScanReport> {
  const started = performance.now();
  const extraction = await extractErrorCodes(artifact, { bases: config.bases, mapping: config.mapping, limits: config.limits, ...hooks });
  const runner = config.rules.scripts.length ? await createScriptRunner(config.rules.scripts) : undefined;
  let validation: Awaited<ReturnType<typeof validate>>;
  try {
    validation = await validate(extraction.errorCodes, config.rules, registry, runner?.run);
  } finally {
    await runner?.close();
  }
  const violationsByRule: Record<string, number> = {};
  for (const v of validation.violations) violationsByRule[v.rule] = (violationsByRule[v.rule] ?? 0) + 1;
  const durationMs = Math.round(performance.now() - started);
  return {
    artifact: artifactName,
    bases: config.bases,
    errorCodes: extraction.errorCodes,
    violations: validation.violations,
    dynamicSites: extraction.dynamicSites,
    exceptionClasses: extraction.exceptionClasses,
    problems: extraction.problems,
    registryAdditions: validation.newlyCompliant,
    stats: {
      ...extraction.stats,
      errorCodes: extraction.errorCodes.length,
      distinctCodes: new Set(extraction.errorCodes.map((e) => e.code)).size,
      dynamicSites: extraction.dynamicSites.length,
      malformedClasses: extraction.problems.length,
      alreadyCompliant: validation.alreadyCompliant,
      violations: validation.violations.length,
      violationsByRule,
      durationMs,
      classesPerSecond: Math.round(extraction.stats.classes / Math.max(durationMs / 1000, 0.001)),
    },
  };
}
