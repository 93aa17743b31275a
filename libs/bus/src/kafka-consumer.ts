import { randomUUID } from "node:crypto";
import { type EventEnvelope, fromKafkaRecord } from "@opsplane/contracts";
import type { Consumer, IHeaders, Kafka, KafkaMessage } from "kafkajs";
import type pg from "pg";
import type { Subscription } from "./bus.js";
import { deadLetter, deliver } from "./deliver.js";
import type { KafkaSettings, TopicEnsurer } from "./kafka-client.js";
import type { BusLogger } from "./logger.js";
import type { ResolvedSubscribeOptions } from "./subscribe-options.js";
import { Wakeup } from "./wakeup.js";

/**
 * A kafkajs consumer-group member. Offsets are resolved only after the handler
 * finished with a message and committed at the end of each batch, so a member that
 * dies mid-batch leaves its uncommitted messages to the member that inherits the
 * partition (at least once). Ordering per key follows from Kafka's per-partition order.
 */
export async function subscribeKafka(
  kafka: Kafka,
  topics: TopicEnsurer,
  settings: KafkaSettings,
  o: ResolvedSubscribeOptions,
  pool: pg.Pool,
  logger: BusLogger,
): Promise<Subscription> {
  await topics.ensure(o.topics);
  const consumer: Consumer = kafka.consumer({
    groupId: o.group,
    ...(settings.sessionTimeoutMs ? { sessionTimeout: settings.sessionTimeoutMs } : {}),
    ...(settings.heartbeatIntervalMs ? { heartbeatInterval: settings.heartbeatIntervalMs } : {}),
  });
  let closing = false;
  const closed = new Wakeup();
  const delivery = { ...o, pool, logger, closed, isClosing: () => closing };
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: o.topics, fromBeginning: o.fromBeginning });
    await consumer.run({
      autoCommit: true,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale, commitOffsetsIfNecessary }) => {
        for (const m of batch.messages) {
          if (closing || !isRunning() || isStale()) break;
          const envelope = await decode(batch.topic, batch.partition, m, o, pool, logger);
          if (envelope && !(await deliver({ ...envelope, topic: batch.topic, attempt: 1 }, delivery))) break;
          resolveOffset(m.offset);
          await heartbeat();
        }
        await commitOffsetsIfNecessary();
      },
    });
  } catch (err) {
    await consumer.disconnect().catch(() => {});
    throw err;
  }
  return {
    close: async () => {
      closing = true;
      closed.fire();
      // Waits for the batch in flight, then commits the resolved offsets and leaves the group.
      await consumer.disconnect();
    },
  };
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
