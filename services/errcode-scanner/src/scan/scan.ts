import type { DynamicSite, ErrorCodeEntry, ExtractionResult, Problem } from "./engine.js";
import { defaultBounds, extractBounded, type RowHooks, type ScanBounds } from "./isolated-extract.js";
import type { ResolvedConfig } from "./rules.js";
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
  /**
   * Why the scan checked nothing, or nothing under a base: no class file could be read, or a base
   * has subclasses but no code was found under it (the CLI's exit status 3). Empty otherwise.
   */
  notChecked: string[];
  /**
   * Bases nothing in the artifact is or extends, while another base was found (none found is in
   * `notChecked`): a list shared by several systems names some one artifact does not use, but a
   * misspelt name looks the same, so the CLI warns about each.
   */
  basesNotFound: string[];
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

/**
 * Reads, extracts and validates: the whole pipeline, with no database. Reading and extraction run
 * in a worker thread held to `bounds`; past them the scan fails with a {@link ScanBoundsError}.
 */
export async function scan(
  artifact: string,
  artifactName: string,
  config: ResolvedConfig,
  registry: readonly RegistryEntry[],
  hooks: RowHooks = {},
  bounds: ScanBounds = defaultBounds,
): Promise<ScanReport> {
  const started = performance.now();
  const extraction = await extractBounded(artifact, { bases: config.bases, mapping: config.mapping, limits: config.limits }, hooks, bounds);
  // The sandbox (QuickJS) is loaded only for rules files with scripts: most scans have none.
  const runner = config.rules.scripts.length
    ? await (await import("./script-rules.js")).createScriptRunner(config.rules.scripts)
    : undefined;
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
    notChecked: notChecked(extraction),
    basesNotFound: basesNotFound(extraction),
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

const notFound = (b: ExtractionResult["coverage"][number]) => b.subclasses === 0 && b.errorCodes === 0 && b.dynamicSites === 0;

/**
 * See {@link ScanReport.basesNotFound}. A base the artifact names (it holds the class, or a class extends it
 * directly) is there even with nothing counted under it: a base above another base counts nothing, each class
 * going to the nearer one. Ancestors of those outside the artifact (the JDK's `java.lang.Exception` above
 * `RuntimeException`) cannot be seen, so `java.` and `javax.` bases are not listed.
 */
function basesNotFound(x: ExtractionResult): string[] {
  if (x.coverage.every(notFound)) return [];
  return x.coverage.filter((b) => notFound(b) && !b.named && !/^javax?\./.test(b.base)).map((b) => b.base);
}

/** Reasons a green result would mean nothing: see {@link ScanReport.notChecked}. */
function notChecked(x: ExtractionResult): string[] {
  if (x.stats.classes === 0)
    return [
      x.problems.length
        ? `none of the ${x.problems.length} class files could be read (all malformed or unsupported)`
        : "the artifact holds no class files",
    ];
  // No base found anywhere (a misspelt name, a jar of another system): a gate would pass on nothing.
  if (x.coverage.every(notFound)) {
    const names = x.coverage.map((b) => b.base).join(", ");
    return [
      x.coverage.length === 1
        ? `no error code was found under base ${names}, and no class in the artifact extends it: check the base's name`
        : `no error code was found under any of the bases ${names}, and no class in the artifact extends them: check their names`,
    ];
  }
  return x.coverage
    .filter((b) => b.subclasses > 0 && b.errorCodes === 0)
    .map(
      (b) =>
        `base ${b.base} has ${b.subclasses} subclass${b.subclasses === 1 ? "" : "es"} but no error code was found under it` +
        (b.dynamicSites ? ` (${b.dynamicSites} site${b.dynamicSites === 1 ? "" : "s"} with a code not statically known)` : ""),
    );
}
