import type pg from "pg";
import { appendEvents, type OutboxRow } from "./postgres-log.js";

interface Pending {
  rows: OutboxRow[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Groups publishes made outside a transaction into one multi-row INSERT, like
 * Kafka's linger: while one batch is being written, the next accumulates. Exactly
 * one batch is in flight at a time, so events keep the order in which `publish`
 * was called (a later batch always gets a later transaction id).
 */
export class PublishBatcher {
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly maxRows = 2000,
  ) {}

  /** Resolves once the rows are committed. */
  publish(rows: OutboxRow[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ rows, resolve, reject });
      // setImmediate lets callers in the same tick join the first batch too.
      this.flushing ??= new Promise<void>((r) => setImmediate(r)).then(() => this.flush());
    });
  }

  /** Waits until everything published so far is written. */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch: Pending[] = [];
        let count = 0;
        while (this.queue.length > 0 && (count === 0 || count + this.queue[0]!.rows.length <= this.maxRows)) {
          const p = this.queue.shift()!;
          batch.push(p);
          count += p.rows.length;
        }
        try {
          await appendEvents(
            this.pool,
            batch.flatMap((p) => p.rows),
          );
          for (const p of batch) p.resolve();
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }
}
