import type pg from "pg";
import type { Bus, PublishInput, PublishOptions, SubscribeOptions, Subscription } from "./bus.js";
import { deliver } from "./deliver.js";
import type { BusLogger } from "./logger.js";
import type { Outbox } from "./outbox.js";
import { type ConsumerTuning, PostgresConsumer } from "./postgres-consumer.js";
import { resolveSubscribeOptions } from "./subscribe-options.js";

/** The `postgres` adapter: `bus.events` is both the outbox and the log consumers read. */
export class PostgresBus implements Bus {
  readonly kind = "postgres" as const;
  private readonly subscriptions = new Set<PostgresConsumer>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly outbox: Outbox,
    private readonly tuning: ConsumerTuning,
    private readonly logger: BusLogger,
    private readonly onClose: () => void,
  ) {}

  publish(events: PublishInput | PublishInput[], opts?: PublishOptions): Promise<void> {
    return this.outbox.publish(events, opts);
  }

  async subscribe(opts: SubscribeOptions): Promise<Subscription> {
    const o = resolveSubscribeOptions(opts);
    const consumer: PostgresConsumer = new PostgresConsumer({
      ...this.tuning,
      pool: this.pool,
      group: o.group,
      topics: o.topics,
      batchSize: o.batchSize,
      fromBeginning: o.fromBeginning,
      logger: this.logger,
      process: async (events, attempt, shouldStop) => {
        const delivery = { ...o, pool: this.pool, logger: this.logger, closed: consumer.closed, isClosing: shouldStop };
        let done = 0;
        for (const e of events) {
          if (shouldStop()) break;
          const { position: _, ...event } = e;
          if (!(await deliver({ ...event, attempt }, delivery))) break;
          done++;
        }
        return done;
      },
    });
    await consumer.ready;
    this.subscriptions.add(consumer);
    return {
      close: async () => {
        this.subscriptions.delete(consumer);
        await consumer.close();
      },
    };
  }

  async check(): Promise<void> {
    await this.pool.query("SELECT 1 FROM bus.offsets LIMIT 1");
  }

  async close(): Promise<void> {
    this.onClose();
    await Promise.all([...this.subscriptions].map((c) => c.close()));
    this.subscriptions.clear();
    await this.outbox.close();
  }
}
