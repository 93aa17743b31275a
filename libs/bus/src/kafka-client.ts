import { type Admin, Kafka, logLevel } from "kafkajs";
import type { BusLogger } from "./logger.js";

export interface KafkaSettings {
  brokers: string[];
  /** kafkajs client id (default "opsplane"). */
  clientId?: string;
  /** Consumer group session timeout: how long a dead member keeps its partitions (default 30000). */
  sessionTimeoutMs?: number;
  /** Default 3000; must stay well below the session timeout. */
  heartbeatIntervalMs?: number;
  /** Partitions of topics the bus creates; default: the broker's num.partitions. */
  numPartitions?: number;
  /** Run the outbox relay in this process (default true; replicas elect one active relay). */
  relay?: boolean;
}

/** A kafkajs client whose log lines go to the bus logger. */
export function createKafka(s: KafkaSettings, logger: BusLogger): Kafka {
  return new Kafka({
    clientId: s.clientId ?? "opsplane",
    brokers: s.brokers,
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log }) => {
        const { message, ...extra } = log;
        if (level === logLevel.ERROR) logger.error({ kafka: extra }, `kafkajs: ${message}`);
        else logger.warn({ kafka: extra }, `kafkajs: ${message}`);
      },
  });
}

/** Creates topics the first time this process needs them (no-op when they exist). */
export class TopicEnsurer {
  private readonly known = new Set<string>();

  constructor(
    private readonly admin: Admin,
    private readonly numPartitions?: number,
  ) {}

  async ensure(topics: Iterable<string>): Promise<void> {
    const missing = [...new Set(topics)].filter((t) => !this.known.has(t));
    if (missing.length === 0) return;
    await this.admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((topic) => ({ topic, ...(this.numPartitions ? { numPartitions: this.numPartitions } : {}) })),
    });
    for (const t of missing) this.known.add(t);
  }
}
