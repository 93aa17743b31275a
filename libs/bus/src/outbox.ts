import type pg from "pg";
import type { PublishInput, PublishOptions } from "./bus.js";
import { appendEvents, type EventDefaults, toOutboxRows } from "./postgres-log.js";
import { PublishBatcher } from "./publish-batcher.js";

/** The publishing side both adapters share: every event lands in `bus.events` first. */
export class Outbox {
  private readonly batcher: PublishBatcher;

  constructor(
    pool: pg.Pool,
    private readonly defaults: EventDefaults,
  ) {
    this.batcher = new PublishBatcher(pool);
  }

  async publish(events: PublishInput | PublishInput[], opts?: PublishOptions): Promise<void> {
    const rows = toOutboxRows(Array.isArray(events) ? events : [events], this.defaults);
    if (rows.length === 0) return;
    if (opts?.tx) await appendEvents(opts.tx, rows);
    else await this.batcher.publish(rows);
  }

  /** Waits for batched publishes still being written. */
  close(): Promise<void> {
    return this.batcher.drain();
  }
}
