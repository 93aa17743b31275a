/**
 * TPS limit as a token bucket refilled continuously (fractions of a token, from a monotonic
 * millisecond clock), so 1–5 calls a second are as exact as 10 000: sustained, `tps` calls a
 * second pass; after a quiet spell at most one second's worth (at least one call) passes at once.
 */
export class TokenBucket {
  private tokens: number;
  private perMs: number;
  private capacity: number;

  constructor(
    tps: number,
    private last: number,
  ) {
    this.perMs = tps / 1000;
    this.capacity = Math.max(1, tps);
    this.tokens = this.capacity;
  }

  /** A live change keeps the tokens already earned, up to the new capacity. */
  setRate(tps: number, now: number): void {
    this.refill(now);
    this.perMs = tps / 1000;
    this.capacity = Math.max(1, tps);
    if (this.tokens > this.capacity) this.tokens = this.capacity;
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private refill(now: number): void {
    const elapsed = now - this.last;
    if (elapsed <= 0) return;
    this.last = now;
    this.tokens = Math.min(this.capacity, this.tokens + elapsed * this.perMs);
  }
}
