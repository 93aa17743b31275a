/** Per-script limits and shape; every field has a default. */
export interface ScriptOptions {
  /** Name of the global function each call invokes with the input. */
  entry?: string;
  /** Wall-clock budget of one call (and of the top-level code at load). */
  timeLimitMs?: number;
  /** Heap the script's runtime may hold, including what earlier calls left in globals. */
  memoryLimitBytes?: number;
  /** Interpreter stack; bounds recursion depth (128 KiB is roughly 700 plain calls). */
  stackLimitBytes?: number;
  /** Largest JSON result, in UTF-8 bytes. */
  maxOutputBytes?: number;
  /** console.* lines kept per call; further lines are counted, not kept. */
  maxLogLines?: number;
  /** Longest console.* line kept; longer lines are cut. */
  maxLogLineLength?: number;
}

export type ScriptLimits = Required<ScriptOptions>;

const KiB = 1024;
const MiB = 1024 * KiB;

export const defaultLimits: Readonly<ScriptLimits> = {
  entry: "main",
  timeLimitMs: 100,
  memoryLimitBytes: 16 * MiB,
  stackLimitBytes: 128 * KiB,
  maxOutputBytes: 1 * MiB,
  maxLogLines: 100,
  maxLogLineLength: 1000,
};

// The memory floor leaves room for QuickJS's own intrinsics and the ceiling stays well under a
// worker's WASM memory (WORKER_MEMORY_BYTES); the stack ceiling keeps the interpreter's
// check ahead of the worker's native stack for every recursion path measured (JSON, toJSON, getters).
const ranges: Record<Exclude<keyof ScriptLimits, "entry">, readonly [number, number]> = {
  timeLimitMs: [1, 60_000],
  memoryLimitBytes: [1 * MiB, 256 * MiB],
  stackLimitBytes: [16 * KiB, 256 * KiB],
  maxOutputBytes: [1, 64 * MiB],
  maxLogLines: [0, 10_000],
  maxLogLineLength: [1, 100_000],
};

/** Hard cap on one worker's WASM memory, shared by its scripts: the backstop behind the sampled per-script limit. */
export const WORKER_MEMORY_BYTES = 512 * MiB;

const identifier = /^[A-Za-z_$][\w$]*$/;

/** Fills defaults and rejects out-of-range values: a typo here must not silently lift a limit. */
export function resolveLimits(options: ScriptOptions = {}): ScriptLimits {
  const limits = { ...defaultLimits, ...stripUndefined(options) };
  if (!identifier.test(limits.entry)) throw new RangeError(`entry must be a plain identifier, got ${JSON.stringify(limits.entry)}`);
  for (const [key, [min, max]] of Object.entries(ranges)) {
    const value = limits[key as keyof typeof ranges];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new RangeError(`${key} must be an integer from ${min} to ${max}, got ${value}`);
    }
  }
  return limits;
}

function stripUndefined(options: ScriptOptions): ScriptOptions {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
}

/** "16 MiB", "128 KiB", "512 bytes": how limits appear in error messages. */
export function formatBytes(bytes: number): string {
  if (bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes % KiB === 0) return `${bytes / KiB} KiB`;
  return `${bytes} bytes`;
}
