import type { SdkLogger } from "../contracts.js";

/**
 * At most one warning per key per period: a flood of refused requests (a scanner, a replaying
 * attacker) costs one log line every 10 s, with the number left out since the previous one.
 */
export class ThrottledLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: SdkLogger,
    private readonly periodMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  warn(key: string, msg: string, fields?: Record<string, unknown>): void {
    const now = this.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.periodMs) {
      entry.suppressed++;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    if (this.last.size >= 1000) this.last.clear();
    this.last.set(key, { at: now, suppressed: 0 });
    this.log.warn(suppressed > 0 ? `${msg} (and ${suppressed} more like it not logged)` : msg, fields);
  }
}
