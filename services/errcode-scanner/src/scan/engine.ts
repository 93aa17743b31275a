import { type Container, walkArtifact } from "./archive.js";
import { MalformedClassError, readClass } from "./classfile.js";
import { CodeExtractor, type Finding, type Location } from "./extract.js";
import { Hierarchy, type ScannedClass } from "./hierarchy.js";
import { defaultLimits, type ScanLimits } from "./limits.js";
import { type CodeMapping, defaultMapping } from "./mapping.js";

export interface ScanOptions {
  /** Fully-qualified base exception classes (`com.acme.BizException`). */
  bases: string[];
  mapping?: Partial<CodeMapping>;
  limits?: Partial<ScanLimits>;
  /** Receives every class as it is read (the seed's tables); the engine keeps no table rows itself. */
  onClass?: (c: ScannedClass, container: Container) => void | Promise<void>;
  onContainer?: (c: Container) => void;
}

/** A class file that could not be read; the scan goes on without it. */
export interface Problem {
  entry: string;
  message: string;
}

export interface ErrorCodeEntry {
  code: string;
  /** The message when it is a constant; null when dynamic or absent (see messageKind). */
  message: string | null;
  messageKind: "constant" | "dynamic" | "absent";
  exceptionClass: string;
  family: string;
  locations: Location[];
}

/** A construction site whose code cannot be known statically: reported, never guessed. */
export interface DynamicSite {
  exceptionClass: string;
  reason: "code not statically known" | "no code argument";
  message: string | null;
  location: Location;
}

/** What was found under one base class: whether anything under it was really checked. */
export interface BaseCoverage {
  base: string;
  /** Classes extending it in the artifact (itself not counted). */
  subclasses: number;
  /** Code/message entries whose exception class is under it. */
  errorCodes: number;
  /** Sites under it whose code is not statically known. */
  dynamicSites: number;
  /** Whether the artifact holds the class or a class whose superclass it is (a base above another base counts none of the above). */
  named: boolean;
}

export interface ExtractionResult {
  errorCodes: ErrorCodeEntry[];
  dynamicSites: DynamicSite[];
  exceptionClasses: string[];
  problems: Problem[];
  coverage: BaseCoverage[];
  stats: { containers: number; classes: number; methods: number; exceptionClasses: number; constructionSites: number; durationMs: number };
}

/** Reads an artifact and returns every error code its exception classes are built with. */
export async function extractErrorCodes(artifact: string, options: ScanOptions): Promise<ExtractionResult> {
  const started = performance.now();
  const limits = { ...defaultLimits, ...options.limits };
  const mapping = { ...defaultMapping, ...options.mapping };
  const classes: ScannedClass[] = [];
  const problems: Problem[] = [];
  const containers: Container[] = [];
  let methods = 0;

  await walkArtifact(artifact, limits, {
    container(c) {
      containers.push(c);
      options.onContainer?.(c);
    },
    async classEntry(e) {
      let model: ScannedClass;
      try {
        model = { ...readClass(e.data), location: e.location, containerId: e.container.id, release: e.release };
      } catch (err) {
        if (!(err instanceof MalformedClassError)) throw err;
        problems.push({ entry: e.location, message: err.message });
        return;
      }
      methods += model.methods.length;
      if (options.onClass) await options.onClass(model, e.container);
      classes.push(model);
    },
  });

  const hierarchy = new Hierarchy(classes, new Set(options.bases));
  const findings = new CodeExtractor(hierarchy, mapping).findings();
  const { errorCodes, dynamicSites } = aggregate(findings);
  // Methods are interpreted lazily: one whose bytecode made no sense surfaces only now.
  for (const c of classes) {
    const bad = c.methods.find((m) => m.problem);
    if (bad) problems.push({ entry: c.location, message: `malformed class file (${bad.problem})` });
  }
  const exceptionClasses = hierarchy.exceptionClasses();
  const under = (base: string) => (cls: string) => hierarchy.baseOf(cls) === base;
  const superclasses = new Set(classes.map((c) => c.superName));
  const coverage = options.bases.map((base) => ({
    base,
    subclasses: exceptionClasses.filter((c) => c !== base && under(base)(c)).length,
    errorCodes: errorCodes.filter((e) => under(base)(e.exceptionClass)).length,
    dynamicSites: dynamicSites.filter((d) => under(base)(d.exceptionClass)).length,
    named: hierarchy.byName.has(base) || superclasses.has(base),
  }));
  return {
    errorCodes,
    dynamicSites,
    exceptionClasses,
    problems,
    coverage,
    stats: {
      containers: containers.length,
      classes: classes.length,
      methods,
      exceptionClasses: exceptionClasses.length,
      constructionSites: findings.length,
      durationMs: Math.round(performance.now() - started),
    },
  };
}

function aggregate(findings: Finding[]): { errorCodes: ErrorCodeEntry[]; dynamicSites: DynamicSite[] } {
  const byKey = new Map<string, ErrorCodeEntry>();
  const dynamicSites: DynamicSite[] = [];
  for (const f of findings) {
    const message = f.message.kind === "constant" ? f.message.value : null;
    if (f.code.kind !== "constant") {
      dynamicSites.push({
        exceptionClass: f.exceptionClass,
        reason: f.code.kind === "dynamic" ? "code not statically known" : "no code argument",
        message,
        location: f.location,
      });
      continue;
    }
    const key = JSON.stringify([f.code.value, f.message.kind, message, f.exceptionClass]);
    let entry = byKey.get(key);
    if (!entry) {
      entry = {
        code: f.code.value,
        message,
        messageKind: f.message.kind,
        exceptionClass: f.exceptionClass,
        family: f.family,
        locations: [],
      };
      byKey.set(key, entry);
    }
    if (!entry.locations.some((l) => sameLocation(l, f.location))) entry.locations.push(f.location);
  }
  const errorCodes = [...byKey.values()].sort(
    (a, b) => compare(a.code, b.code) || compare(a.exceptionClass, b.exceptionClass) || compare(a.message ?? "", b.message ?? ""),
  );
  return { errorCodes, dynamicSites };
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

const sameLocation = (a: Location, b: Location) =>
  a.artifact === b.artifact && a.method === b.method && a.line === b.line && a.class === b.class;
