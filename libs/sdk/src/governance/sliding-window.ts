/**
 * Calls and failures over the last `windowMs`, in ten buckets: a bucket older than the window is
 * reused in place, so recording a call never allocates and the window slides in tenths.
 */
export class SlidingWindow {
  static readonly buckets = 10;
  private readonly calls = new Float64Array(SlidingWindow.buckets);
  private readonly failures = new Float64Array(SlidingWindow.buckets);
  /** The absolute bucket number each slot holds now (-1: empty). */
  private readonly slots = new Float64Array(SlidingWindow.buckets).fill(-1);
  private readonly bucketMs: number;
  /** Totals of the last `sum` call. */
  totalCalls = 0;
  totalFailures = 0;

  constructor(windowMs: number) {
    this.bucketMs = windowMs / SlidingWindow.buckets;
  }

  record(now: number, failed: boolean): void {
    const bucket = Math.floor(now / this.bucketMs);
    const i = bucket % SlidingWindow.buckets;
    if (this.slots[i] !== bucket) {
      this.slots[i] = bucket;
      this.calls[i] = 0;
      this.failures[i] = 0;
    }
    this.calls[i]! += 1;
    if (failed) this.failures[i]! += 1;
  }

  /** Sets totalCalls and totalFailures to the window ending at `now`. */
  sum(now: number): void {
    const current = Math.floor(now / this.bucketMs);
    let calls = 0;
    let failures = 0;
    for (let i = 0; i < SlidingWindow.buckets; i++) {
      const age = current - this.slots[i]!;
      if (age >= 0 && age < SlidingWindow.buckets) {
        calls += this.calls[i]!;
        failures += this.failures[i]!;
      }
    }
    this.totalCalls = calls;
    this.totalFailures = failures;
  }

  reset(): void {
    this.slots.fill(-1);
  }
}
