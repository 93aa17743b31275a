import { toKafkaRecord } from "@opsplane/contracts";
import type { Message, Producer } from "kafkajs";
import type pg from "pg";
import type { TopicEnsurer } from "./kafka-client.js";
import type { BusLogger } from "./logger.js";
import { type ConsumerTuning, PostgresConsumer } from "./postgres-consumer.js";
import { ALL_TOPICS, type LoggedEvent } from "./postgres-log.js";

export const RELAY_GROUP = "__kafka_relay";
const MAX_BACKOFF_MS = 5000;

/**
 * Ships the outbox to Kafka. It is itself a consumer of the postgres log (group
 * `__kafka_relay`, every topic), so it inherits its guarantees: one active relay
 * among the replicas, gap-safe reads, and the offset moves only after Kafka has
 * acknowledged the batch (acks=all). A crash between the two re-sends the batch:
 * Kafka consumers may see duplicates, never gaps, which is why they de-duplicate
 * on the event id.
 */
export function startRelay(
  pool: pg.Pool,
  producer: Producer,
  topics: TopicEnsurer,
  tuning: ConsumerTuning,
  logger: BusLogger,
): PostgresConsumer {
  const relay: PostgresConsumer = new PostgresConsumer({
    ...tuning,
    pool,
    group: RELAY_GROUP,
    topics: [ALL_TOPICS],
    batchSize: 1000,
    fromBeginning: true,
    logger,
    process: async (events, _attempt, shouldStop) => {
      for (let backoff = 100; ; backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)) {
        try {
          await ship(producer, topics, events);
          return events.length;
        } catch (err) {
          logger.warn({ err, events: events.length }, "bus: relay could not ship to Kafka; retrying");
          if (shouldStop()) return 0;
          await relay.closed.wait(backoff);
          if (shouldStop()) return 0;
        }
      }
    },
  });
  relay.ready.catch((err) => logger.error({ err }, "bus: kafka relay could not start"));
  return relay;
}

async function ship(producer: Producer, topics: TopicEnsurer, events: LoggedEvent[]): Promise<void> {
  const byTopic = new Map<string, Message[]>();
  for (const e of events) {
    const record = toKafkaRecord(e);
    const messages = byTopic.get(e.topic) ?? [];
    byTopic.set(e.topic, messages);
    messages.push({ key: record.key, value: record.value, headers: record.headers });
  }
  await topics.ensure(byTopic.keys());
  await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
}
