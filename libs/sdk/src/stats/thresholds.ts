/**
 * Latency thresholds per interface: the availability index (seed 002, paragraphs 0076-0079)
 * counts requests within the normal threshold fully, those within the tolerable one by k (0.5),
 * the rest not at all. The defaults follow Apdex, whose "tolerating" zone ends at 4× the target.
 */
export interface InterfaceThresholds {
  /** A request at most this slow is normal. */
  normalMs: number;
  /** A request at most this slow (and slower than normalMs) is tolerable; slower is beyond. */
  tolerableMs: number;
  /** The configured maximum QPS the report compares the offered load with (saturation); none when unset. */
  maxQps?: number;
}

export const defaultThresholds: InterfaceThresholds = { normalMs: 500, tolerableMs: 2000 };

export interface ThresholdOptions {
  /** For every interface without its own entry (merged over the defaults above). */
  default?: Partial<InterfaceThresholds>;
  /** By interface code, merged over `default`. */
  byCode?: Record<string, Partial<InterfaceThresholds>>;
}

/**
 * The thresholds of `code`: its own entry over the app's default over the SDK's. A tolerable
 * threshold given nowhere is 4× the normal one; one below the normal threshold is raised to it.
 */
export function thresholdsFor(code: string, options: ThresholdOptions | undefined): InterfaceThresholds {
  const own = { ...options?.default, ...options?.byCode?.[code] };
  const normalMs = finiteAtLeast(own.normalMs, 0) ?? defaultThresholds.normalMs;
  const tolerableMs = Math.max(normalMs, finiteAtLeast(own.tolerableMs, 0) ?? normalMs * 4);
  const maxQps = finiteAtLeast(own.maxQps, Number.MIN_VALUE);
  return maxQps === undefined ? { normalMs, tolerableMs } : { normalMs, tolerableMs, maxQps };
}

function finiteAtLeast(n: number | undefined, min: number): number | undefined {
  return typeof n === "number" && Number.isFinite(n) && n >= min ? n : undefined;
}
