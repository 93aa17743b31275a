import { type Admin, type Kafka, Partitioners, type Producer } from "kafkajs";
import type pg from "pg";
import type { Bus, PublishInput, PublishOptions, SubscribeOptions, Subscription } from "./bus.js";
import { type KafkaSettings, TopicEnsurer } from "./kafka-client.js";
import { subscribeKafka } from "./kafka-consumer.js";
import { startRelay } from "./kafka-relay.js";
import type { BusLogger } from "./logger.js";
import type { Outbox } from "./outbox.js";
import type { ConsumerTuning, PostgresConsumer } from "./postgres-consumer.js";
import { resolveSubscribeOptions } from "./subscribe-options.js";

/**
 * The `kafka` adapter. Publishing writes to the same outbox as the postgres adapter,
 * so publishing inside a transaction works identically; the relay ships the outbox
 * to Kafka and subscribers are kafkajs consumer groups.
 */
export class KafkaBus implements Bus {
  readonly kind = "kafka" as const;
  private readonly subscriptions = new Set<Subscription>();
  private readonly admin: Admin;
  private readonly producer: Producer;
  private readonly topics: TopicEnsurer;
  private relay: PostgresConsumer | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly outbox: Outbox,
    private readonly kafka: Kafka,
    private readonly settings: KafkaSettings,
    private readonly tuning: ConsumerTuning,
    private readonly logger: BusLogger,
    private readonly onClose: () => void,
  ) {
    this.admin = kafka.admin();
    // One request in flight keeps a retried batch from overtaking the next one (order per key).
    this.producer = kafka.producer({
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    this.topics = new TopicEnsurer(this.admin, settings.numPartitions);
  }

  async start(): Promise<void> {
    await this.admin.connect();
    await this.producer.connect();
    if (this.settings.relay !== false) this.relay = startRelay(this.pool, this.producer, this.topics, this.tuning, this.logger);
  }

  publish(events: PublishInput | PublishInput[], opts?: PublishOptions): Promise<void> {
    return this.outbox.publish(events, opts);
  }

  async subscribe(opts: SubscribeOptions): Promise<Subscription> {
    const sub = await subscribeKafka(this.kafka, this.topics, this.settings, resolveSubscribeOptions(opts), this.pool, this.logger);
    this.subscriptions.add(sub);
    return {
      close: async () => {
        this.subscriptions.delete(sub);
        await sub.close();
      },
    };
  }

  async check(): Promise<void> {
    await this.pool.query("SELECT 1 FROM bus.offsets LIMIT 1");
    await this.admin.describeCluster();
  }

  async close(): Promise<void> {
    this.onClose();
    await Promise.all([...this.subscriptions].map((s) => s.close()));
    this.subscriptions.clear();
    await this.outbox.close();
    // The relay stops after the batch it is shipping, so the producer is still needed until then.
    await this.relay?.close();
    await this.producer.disconnect();
    await this.admin.disconnect();
  }
}
