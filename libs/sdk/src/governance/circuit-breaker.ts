import type { BreakerState, RequestOutcome } from "../contracts.js";
import type { BreakerRule } from "./rules.js";
import { SlidingWindow } from "./sliding-window.js";

/** What `admit` answers. */
export const PASS = 0;
export const TRIAL = 1;
export const REJECT = 2;

/**
 * Closed → open when the window's failures reach `errorCount`, or their share of at least
 * `minRequests` calls reaches `errorRatio`; a call slower than `timeoutMs` is a failure. Open →
 * half-open after `openMs`, letting one trial call through: its success closes the breaker (with
 * an empty window), its failure opens it for another `openMs`. While half-open every other call
 * is refused; a trial still running after `timeoutMs` (or `openMs` without a timeout) counts as
 * failed, so a hung trial cannot hold the breaker half-open.
 */
export class CircuitBreaker {
  state: BreakerState["state"] = "closed";
  private openedAt = 0;
  private trialStartedAt = 0;
  /** Changes on every transition, so only the current trial's outcome counts. */
  trial = 0;
  private window: SlidingWindow;

  constructor(private rule: BreakerRule) {
    this.window = new SlidingWindow(rule.windowMs);
  }

  /** A live rule change keeps the state; the counts too, unless the window's length changed. */
  update(rule: BreakerRule): void {
    if (rule.windowMs !== this.rule.windowMs) this.window = new SlidingWindow(rule.windowMs);
    this.rule = rule;
  }

  admit(now: number): number {
    if (this.state === "closed") return PASS;
    if (this.state === "open") {
      if (now - this.openedAt < this.rule.openMs) return REJECT;
      this.state = "half-open";
      this.trialStartedAt = now;
      this.trial++;
      return TRIAL;
    }
    if (now - this.trialStartedAt > (this.rule.timeoutMs ?? this.rule.openMs)) this.open(now);
    return REJECT;
  }

  /** The trial `admit` granted never ran (a limit refused it): the next call is the trial. */
  cancelTrial(): void {
    this.state = "open";
    this.openedAt = Number.NEGATIVE_INFINITY;
    this.trial++;
  }

  /** A call admitted while closed ended; calls that ended after the breaker left closed do not count. */
  record(now: number, outcome: RequestOutcome): void {
    if (this.state !== "closed") return;
    const failed = this.isFailure(outcome);
    this.window.record(now, failed);
    if (!failed) return;
    const w = this.window;
    w.sum(now);
    const r = this.rule;
    if (
      (r.errorCount !== undefined && w.totalFailures >= r.errorCount) ||
      (r.errorRatio !== undefined && w.totalCalls >= r.minRequests && w.totalFailures >= r.errorRatio * w.totalCalls)
    )
      this.open(now);
  }

  trialEnded(trial: number, now: number, outcome: RequestOutcome): void {
    if (trial !== this.trial || this.state !== "half-open") return;
    if (this.isFailure(outcome)) this.open(now);
    else {
      this.state = "closed";
      this.trial++;
      this.window.reset();
    }
  }

  snapshot(now: number): BreakerState {
    this.window.sum(now);
    // An open breaker turns half-open at the next call once openMs passed; the status says so already.
    const retryInMs = this.state === "open" ? Math.ceil(this.rule.openMs - (now - this.openedAt)) : 0;
    const state = this.state === "open" && retryInMs <= 0 ? "half-open" : this.state;
    const s: BreakerState = { state, calls: this.window.totalCalls, failures: this.window.totalFailures };
    if (state === "open") s.retryInMs = retryInMs;
    return s;
  }

  private isFailure(outcome: RequestOutcome): boolean {
    return outcome.failed || (this.rule.timeoutMs !== undefined && outcome.durationMs > this.rule.timeoutMs);
  }

  private open(now: number): void {
    this.state = "open";
    this.openedAt = now;
    this.trial++;
  }
}
