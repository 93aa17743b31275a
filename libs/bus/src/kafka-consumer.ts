import { randomUUID } from "node:crypto";
import { type EventEnvelope, fromKafkaRecord } from "@opsplane/contracts";
import type { Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage } from "kafkajs";
import type pg from "pg";
import type { Subscription } from "./bus.js";
import { deadLetter, deliver } from "./deliver.js";
import type { KafkaSettings, TopicEnsurer } from "./kafka-client.js";
import type { BusLogger } from "./logger.js";
import type { ResolvedSubscribeOptions } from "./subscribe-options.js";
import { Wakeup } from "./wakeup.js";

const MAX_BACKOFF_MS = 5000;

export interface KafkaSubscriptionDeps {
  kafka: Kafka;
  topics: TopicEnsurer;
  settings: KafkaSettings;
  options: ResolvedSubscribeOptions;
  pool: pg.Pool;
  logger: BusLogger;
}

/**
 * A kafkajs consumer-group member. Offsets are resolved only after the handler finished
 * with a message and committed every `batchSize` messages and at the end of each fetched
 * batch, so a member that dies mid-batch leaves at most `batchSize` handled messages to be
 * delivered again by the member that inherits the partition (at least once). Ordering per
 * key follows from Kafka's per-partition order.
 *
 * The member keeps itself in the group: when the brokers are unreachable at start, or the
 * consumer crashes in a way kafkajs does not restart from, it tries again with back-off.
 * `problem` says why it is not consuming, for `/readyz`.
 */
export class KafkaSubscription implements Subscription {
  /** Why the member is not in its group right now; undefined while it is. */
  problem: string | undefined = "not joined yet";
  private closing = false;
  /** Fired by close: ends a back-off, and stops retries of a failing handler. */
  private readonly closed = new Wakeup();
  /** Set when the running consumer is gone for good (close, or a crash kafkajs does not restart). */
  private gone = false;
  private readonly stopped = new Wakeup();
  private readonly loop: Promise<void>;
  private markStarted!: () => void;
  /** Settles after the first attempt to join, whether or not it succeeded. */
  readonly started = new Promise<void>((resolve) => {
    this.markStarted = resolve;
  });

  constructor(private readonly d: KafkaSubscriptionDeps) {
    this.loop = this.run();
  }

  /** Waits for the batch in flight, commits the resolved offsets and leaves the group. */
  async close(): Promise<void> {
    this.closing = true;
    this.closed.fire();
    this.stop();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { options: o, logger } = this.d;
    for (let backoff = 100; !this.closing; backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)) {
      const consumer = this.consumer();
      this.gone = false;
      this.stopped.clear();
      try {
        await this.d.topics.ensure(o.topics);
        await consumer.connect();
        await consumer.subscribe({ topics: o.topics, fromBeginning: o.fromBeginning });
        await consumer.run({
          autoCommit: true,
          // Commits inside a large fetch too, so a crash redelivers at most one batchSize of handled messages.
          autoCommitThreshold: o.batchSize,
          eachBatchAutoResolve: false,
          eachBatch: (payload) => this.eachBatch(payload),
        });
        this.markStarted();
        backoff = 100;
        while (!this.gone) await this.stopped.wait(60_000);
      } catch (err) {
        this.problem = `group ${o.group} could not join: ${(err as Error).message}`;
        logger.warn({ err, group: o.group, topics: o.topics }, "bus: kafka consumer could not start; retrying");
        this.markStarted();
      }
      await consumer.disconnect().catch((err) => logger.warn({ err, group: o.group }, "bus: kafka consumer did not disconnect cleanly"));
      if (!this.closing) await this.closed.wait(backoff);
    }
  }

  private consumer(): Consumer {
    const { kafka, settings: s, options: o } = this.d;
    const consumer = kafka.consumer({
      groupId: o.group,
      // How long an idle fetch waits at the broker (new records end it at once), and so how long
      // close() waits for the fetch in flight: kafkajs's 5 s default made each close take 5 s.
      maxWaitTimeInMs: 1000,
      ...(s.sessionTimeoutMs ? { sessionTimeout: s.sessionTimeoutMs } : {}),
      ...(s.heartbeatIntervalMs ? { heartbeatInterval: s.heartbeatIntervalMs } : {}),
    });
    consumer.on(consumer.events.GROUP_JOIN, () => {
      this.problem = undefined;
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      this.problem = `group ${o.group} crashed: ${payload.error.message}`;
      // kafkajs restarts itself after retriable errors only; after any other the loop starts a new consumer.
      if (!payload.restart) this.stop();
    });
    return consumer;
  }

  private stop(): void {
    this.gone = true;
    this.stopped.fire();
  }

  private async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale, commitOffsetsIfNecessary }: EachBatchPayload) {
    const { options: o, pool, logger } = this.d;
    const delivery = { ...o, pool, logger, closed: this.closed, isClosing: () => this.closing };
    for (const m of batch.messages) {
      if (this.closing || !isRunning() || isStale()) break;
      const envelope = await decode(batch.topic, batch.partition, m, o, pool, logger);
      if (envelope && !(await deliver({ ...envelope, topic: batch.topic, attempt: 1 }, delivery))) break;
      resolveOffset(m.offset);
      await commitOffsetsIfNecessary();
      await heartbeat();
    }
  }
}

/** A record that is not a CloudEvent can never be handled: it is set aside instead of retried forever. */
async function decode(
  topic: string,
  partition: number,
  m: KafkaMessage,
  o: ResolvedSubscribeOptions,
  pool: pg.Pool,
  logger: BusLogger,
): Promise<EventEnvelope | undefined> {
  const headers = flattenHeaders(m.headers);
  try {
    return fromKafkaRecord({ key: m.key, value: m.value, headers });
  } catch (err) {
    const data = { partition, offset: m.offset, value: m.value?.toString() ?? null, headers: Object.keys(headers) };
    const key = m.key?.toString() ?? null;
    const event = {
      id: randomUUID(),
      source: `kafka:${topic}`,
      type: "invalid",
      time: new Date().toISOString(),
      key,
      topic,
      data,
      attempt: 0,
    };
    await deadLetter(pool, o.group, event, err);
    logger.error({ err, group: o.group, topic, partition, offset: m.offset }, "bus: record is not a CloudEvent; dead-lettered");
    return undefined;
  }
}

function flattenHeaders(headers: IHeaders | undefined): Record<string, string | Buffer | undefined> {
  const out: Record<string, string | Buffer | undefined> = {};
  for (const [k, v] of Object.entries(headers ?? {})) out[k] = Array.isArray(v) ? v[0] : v;
  return out;
}
