import { toKafkaRecord } from "@opsplane/contracts";
import type { Message, Producer } from "kafkajs";
import type pg from "pg";
import { deadLetter } from "./deliver.js";
import type { TopicEnsurer } from "./kafka-client.js";
import type { BusLogger } from "./logger.js";
import { type ConsumerTuning, PostgresConsumer } from "./postgres-consumer.js";
import { ALL_TOPICS, type LoggedEvent } from "./postgres-log.js";

export const RELAY_GROUP = "__kafka_relay";
const MAX_BACKOFF_MS = 5000;
/**
 * Most record bytes in one produce request. A broker refuses a record batch over its
 * message.max.bytes (1 MB by default) and kafkajs sends each partition's share of a request
 * as one batch, so a backlog of 1,000 events of 1 KB must go in several requests.
 */
const MAX_REQUEST_BYTES = 512 * 1024;
/** Kafka's per-record framing beside key, value and headers, roughly. */
const RECORD_OVERHEAD_BYTES = 64;

export interface RelayTarget {
  producer: Producer;
  topics: TopicEnsurer;
  /** Connects the producer (once); called before each request so a broker that was down at start is tried again. */
  connect: () => Promise<void>;
  /** Why the last request could not be shipped; cleared once one is. For `/readyz`. */
  problem?: string;
}

interface Outgoing {
  event: LoggedEvent;
  message: Message;
  bytes: number;
}

/**
 * Ships the outbox to Kafka. It is itself a consumer of the postgres log (group
 * `__kafka_relay`, every topic), so it inherits its guarantees: one active relay
 * among the replicas, gap-safe reads, and the offset moves only after Kafka has
 * acknowledged the events (acks=all). A crash between the two re-sends them:
 * Kafka consumers may see duplicates, never gaps, which is why they de-duplicate
 * on the event id.
 *
 * A batch goes out in requests of at most MAX_REQUEST_BYTES, in order. A request the broker
 * finds too large is split in two; a single event it refuses as too large is set aside in
 * `bus.dead_letters` (group `__kafka_relay`) rather than holding back every event behind it.
 */
export function startRelay(pool: pg.Pool, target: RelayTarget, tuning: ConsumerTuning, logger: BusLogger): PostgresConsumer {
  const relay: PostgresConsumer = new PostgresConsumer({
    ...tuning,
    pool,
    group: RELAY_GROUP,
    topics: [ALL_TOPICS],
    batchSize: 1000,
    fromBeginning: true,
    logger,
    process: async (events, _attempt, shouldStop) => {
      const outgoing = events.map(toOutgoing);
      let done = 0;
      let maxBytes = MAX_REQUEST_BYTES;
      let backoff = 100;
      while (done < outgoing.length) {
        const request = take(outgoing, done, maxBytes);
        try {
          await target.connect();
          await ship(target, request);
          target.problem = undefined;
          done += request.length;
          backoff = 100;
        } catch (err) {
          if (tooLarge(err) && request.length > 1) {
            maxBytes = Math.floor(sizeOf(request) / 2);
            continue;
          }
          if (tooLarge(err)) {
            const { position: _, ...event } = request[0]!.event;
            await deadLetter(pool, RELAY_GROUP, event, err);
            logger.error({ err, topic: event.topic, eventId: event.id }, "bus: Kafka refused an event as too large; dead-lettered");
            done += 1;
            continue;
          }
          target.problem = `relay could not ship to Kafka: ${(err as Error).message}`;
          logger.warn({ err, events: outgoing.length - done }, "bus: relay could not ship to Kafka; retrying");
          if (shouldStop()) break;
          await relay.closed.wait(backoff);
          if (shouldStop()) break;
          backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        }
      }
      return done;
    },
  });
  return relay;
}

function toOutgoing(event: LoggedEvent): Outgoing {
  const { key, value, headers } = toKafkaRecord(event);
  let bytes = RECORD_OVERHEAD_BYTES + value.length + (key === null ? 0 : Buffer.byteLength(key));
  for (const [k, v] of Object.entries(headers)) bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  return { event, message: { key, value, headers }, bytes };
}

/** The events from `from` on that fit in `maxBytes`, and always at least one. */
function take(outgoing: Outgoing[], from: number, maxBytes: number): Outgoing[] {
  let end = from + 1;
  let bytes = outgoing[from]!.bytes;
  while (end < outgoing.length && bytes + outgoing[end]!.bytes <= maxBytes) bytes += outgoing[end++]!.bytes;
  return outgoing.slice(from, end);
}

const sizeOf = (request: Outgoing[]) => request.reduce((n, o) => n + o.bytes, 0);

const tooLarge = (err: unknown) => {
  const type = (err as { type?: string }).type;
  return type === "MESSAGE_TOO_LARGE" || type === "RECORD_LIST_TOO_LARGE";
};

async function ship({ producer, topics }: RelayTarget, request: Outgoing[]): Promise<void> {
  const byTopic = new Map<string, Message[]>();
  for (const { event, message } of request) {
    const messages = byTopic.get(event.topic) ?? [];
    byTopic.set(event.topic, messages);
    messages.push(message);
  }
  await topics.ensure(byTopic.keys());
  await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
}
