import { randomBytes } from "node:crypto";
import { Kafka, logLevel } from "kafkajs";

/** A record as it is on the wire, headers flattened to their (first) string value. */
export interface WireRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string | undefined>;
}

export interface TopicReader {
  /** Every record read so far, oldest first. */
  records: WireRecord[];
  stop(): Promise<void>;
}

/**
 * Another team's consumer of `topic`: plain kafkajs in a group of its own, reading from the
 * beginning (a broker given in KAFKA_BROKERS may hold earlier runs' records: match yours by
 * content). Creates the topic if it does not exist yet, so nothing is missed while the
 * producer's side is still creating it.
 */
export async function readTopic(brokers: string[], topic: string): Promise<TopicReader> {
  const kafka = new Kafka({ clientId: "opsplane-test-reader", brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic }] }).finally(() => admin.disconnect());
  const records: WireRecord[] = [];
  const consumer = kafka.consumer({ groupId: `test-reader-${randomBytes(4).toString("hex")}`, maxWaitTimeInMs: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message: m }) => {
      const headers: Record<string, string | undefined> = {};
      for (const [k, v] of Object.entries(m.headers ?? {})) headers[k] = (Array.isArray(v) ? v[0] : v)?.toString();
      records.push({ key: m.key, value: m.value, headers });
    },
  });
  return { records, stop: () => consumer.disconnect() };
}
