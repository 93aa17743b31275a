import type { Logger } from "@opsplane/platform";
import type { AssistMetrics } from "./metrics.js";
import type { SessionStore } from "./session-store.js";

/**
 * Ends sessions whose widget has gone quiet. The replica holding a widget's
 * socket notes every frame (a Set insert on the hot path) and advances the
 * sessions' `last_widget_at` in one UPDATE per interval; every replica sweeps
 * for sessions quiet longer than the timeout and ends them (`ended_by` idle,
 * audited, AssistSessionEnded on the bus) and `announce`s it to both sides.
 * Activity is stamped when written, never earlier than it happened, so a
 * session is ended at most one write interval late and never early.
 */
export class IdleTimeout {
  private heardFrom = new Set<string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: SessionStore,
    private readonly timeoutSeconds: number,
    private readonly announce: (sessionId: string) => Promise<void>,
    private readonly metrics: AssistMetrics,
    private readonly log: Logger,
  ) {}

  /** The widget of `sessionId` connected or sent a frame. */
  heard(sessionId: string): void {
    if (this.timeoutSeconds > 0) this.heardFrom.add(sessionId);
  }

  start(): void {
    if (this.timeoutSeconds <= 0) return;
    const ms = this.timeoutSeconds * 1000;
    const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
    const every = (periodMs: number, task: () => Promise<unknown>) => {
      const timer = setInterval(() => {
        // One task at a time, so a slow database never piles up statements.
        this.running = this.running.then(task).catch((err) => this.log.error({ err }, "assist idle timeout task failed"));
      }, periodMs);
      timer.unref();
      this.timers.push(timer);
    };
    every(clamp(ms / 10, 200, 15_000), () => this.writeActivity());
    every(clamp(ms / 4, 250, 60_000), () => this.sweep());
  }

  private async writeActivity(): Promise<void> {
    const ids = [...this.heardFrom];
    this.heardFrom = new Set();
    await this.store.touchWidgets(ids);
  }

  private async sweep(): Promise<void> {
    // Write what this replica heard first, so its own busy sessions are never taken for idle.
    await this.writeActivity();
    for (const sessionId of await this.store.endIdle(this.timeoutSeconds)) {
      this.metrics.idleEnded.inc();
      this.log.info({ sessionId, idleSeconds: this.timeoutSeconds }, "assist session ended: widget idle");
      await this.announce(sessionId);
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.running;
  }
}
