import type { EdgeReason, RequestObserver, RequestOutcome } from "../contracts.js";
import { type InterfaceThresholds, type ThresholdOptions, thresholdsFor } from "./thresholds.js";

/** The reasons the edge answers for the handler, in the order of their counters. */
const reasons: readonly EdgeReason[] = [
  "route-closed",
  "rate-limited",
  "concurrency-limited",
  "circuit-open",
  "baffle",
  "interface-offline",
  "instance-offline",
];
const reasonIndex = new Map<string, number>(reasons.map((r, i) => [r, i]));

// One row of counters per interface in a flat array: a request adds to a few numbers, it
// allocates nothing.
const REQUESTS = 0;
const ERRORS = 1;
const NORMAL = 2;
const TOLERABLE = 3;
const BEYOND = 4;
const LATENCY_SUM = 5;
const LATENCY_MAX = 6;
const ANSWERED = 7;
const STRIDE = ANSWERED + reasons.length;

/** Where requests of codes beyond `maxInterfaces` are counted. */
export const OVERFLOW_CODE = "_other";

export interface InterfaceStatsOptions {
  thresholds?: ThresholdOptions;
  /** The configured maximum QPS of a code whose thresholds name none (the wiring reads the rate-limit rule's tps). */
  maxQps?: (code: string) => number | undefined;
  /** Codes tracked at most (default 1000); requests of later ones count under `_other`. */
  maxInterfaces?: number;
  now?: () => number;
}

/** One interface over one window, as the report carries it. */
export interface InterfaceWindow {
  code: string;
  requests: number;
  errors: number;
  withinNormal: number;
  withinTolerable: number;
  beyond: number;
  normalThresholdMs: number;
  tolerableThresholdMs: number;
  /** Arrivals per second: handled plus answered by the edge. */
  qps: number;
  /** 0 when none is configured. */
  maxQps: number;
  /** Handled without failing, per second. */
  throughputRps: number;
  errorRate: number;
  latencySumMs: number;
  latencyMaxMs: number;
  /** Edge answers by reason; reasons without answers left out. */
  governance: Record<string, number>;
}

export interface StatsWindow {
  intervalMs: number;
  interfaces: InterfaceWindow[];
}

/** Per-interface counters between two reports: request counts, latency buckets, errors and the edge's answers. */
export class InterfaceStats implements RequestObserver {
  private readonly slots = new Map<string, number>();
  private readonly codes: string[] = [];
  private counts = new Float64Array(16 * STRIDE);
  private normalMs = new Float64Array(16);
  private tolerableMs = new Float64Array(16);
  private readonly thresholdOptions: ThresholdOptions;
  private readonly maxInterfaces: number;
  private readonly now: () => number;
  private windowStart: number;

  constructor(private readonly options: InterfaceStatsOptions = {}) {
    this.thresholdOptions = { default: options.thresholds?.default, byCode: { ...options.thresholds?.byCode } };
    this.maxInterfaces = options.maxInterfaces ?? 1000;
    this.now = options.now ?? Date.now;
    this.windowStart = this.now();
  }

  requestFinished(code: string, outcome: RequestOutcome, answeredBy?: EdgeReason): void {
    const slot = this.slotOf(code);
    const row = slot * STRIDE;
    const c = this.counts;
    if (answeredBy !== undefined) {
      const r = reasonIndex.get(answeredBy);
      if (r !== undefined) c[row + ANSWERED + r]!++;
      return;
    }
    const ms = outcome.durationMs;
    c[row + REQUESTS]!++;
    if (outcome.failed) c[row + ERRORS]!++;
    if (ms <= this.normalMs[slot]!) c[row + NORMAL]!++;
    else if (ms <= this.tolerableMs[slot]!) c[row + TOLERABLE]!++;
    else c[row + BEYOND]!++;
    c[row + LATENCY_SUM]! += ms;
    if (ms > c[row + LATENCY_MAX]!) c[row + LATENCY_MAX] = ms;
  }

  /** Makes codes appear in reports before their first request (the app's declared interfaces). */
  track(codes: Iterable<string>): void {
    for (const code of codes) this.slotOf(code);
  }

  /** Changes one interface's thresholds from now on (merged over what it had). */
  setThresholds(code: string, thresholds: Partial<InterfaceThresholds>): void {
    const byCode = this.thresholdOptions.byCode!;
    byCode[code] = { ...byCode[code], ...thresholds };
    const slot = this.slots.get(code);
    if (slot !== undefined) this.loadThresholds(slot, code);
  }

  thresholds(code: string): InterfaceThresholds {
    return thresholdsFor(code, this.thresholdOptions);
  }

  /** The counters since the previous call (or construction); starts the next window. */
  takeWindow(): StatsWindow {
    const end = this.now();
    const intervalMs = Math.max(1, end - this.windowStart);
    this.windowStart = end;
    const seconds = intervalMs / 1000;
    const c = this.counts;
    const interfaces = this.codes.map((code, slot): InterfaceWindow => {
      const row = slot * STRIDE;
      const requests = c[row + REQUESTS]!;
      const errors = c[row + ERRORS]!;
      const governance: Record<string, number> = {};
      let answered = 0;
      reasons.forEach((reason, r) => {
        const n = c[row + ANSWERED + r]!;
        if (n > 0) governance[reason] = n;
        answered += n;
      });
      const t = this.thresholds(code);
      return {
        code,
        requests,
        errors,
        withinNormal: c[row + NORMAL]!,
        withinTolerable: c[row + TOLERABLE]!,
        beyond: c[row + BEYOND]!,
        normalThresholdMs: t.normalMs,
        tolerableThresholdMs: t.tolerableMs,
        qps: (requests + answered) / seconds,
        maxQps: t.maxQps ?? this.options.maxQps?.(code) ?? 0,
        throughputRps: (requests - errors) / seconds,
        errorRate: requests > 0 ? errors / requests : 0,
        latencySumMs: c[row + LATENCY_SUM]!,
        latencyMaxMs: c[row + LATENCY_MAX]!,
        governance,
      };
    });
    c.fill(0);
    return { intervalMs, interfaces };
  }

  private slotOf(code: string): number {
    const known = this.slots.get(code);
    if (known !== undefined) return known;
    if (this.codes.length >= this.maxInterfaces && code !== OVERFLOW_CODE) return this.slotOf(OVERFLOW_CODE);
    const slot = this.codes.length;
    if (slot === this.normalMs.length) this.grow();
    this.codes.push(code);
    this.slots.set(code, slot);
    this.loadThresholds(slot, code);
    return slot;
  }

  private loadThresholds(slot: number, code: string): void {
    const t = this.thresholds(code);
    this.normalMs[slot] = t.normalMs;
    this.tolerableMs[slot] = t.tolerableMs;
  }

  private grow(): void {
    const size = this.normalMs.length * 2;
    const counts = new Float64Array(size * STRIDE);
    counts.set(this.counts);
    this.counts = counts;
    const normal = new Float64Array(size);
    normal.set(this.normalMs);
    this.normalMs = normal;
    const tolerable = new Float64Array(size);
    tolerable.set(this.tolerableMs);
    this.tolerableMs = tolerable;
  }
}
