import { type Admin, type Kafka, Partitioners, type Producer } from "kafkajs";
import type pg from "pg";
import type { Bus, PublishInput, PublishOptions, SubscribeOptions, Subscription } from "./bus.js";
import { KafkaProbe, type KafkaSettings, TopicEnsurer } from "./kafka-client.js";
import { KafkaSubscription } from "./kafka-consumer.js";
import { type RelayTarget, startRelay } from "./kafka-relay.js";
import type { BusLogger } from "./logger.js";
import type { Outbox } from "./outbox.js";
import type { ConsumerTuning, PostgresConsumer } from "./postgres-consumer.js";
import { resolveSubscribeOptions } from "./subscribe-options.js";

/**
 * The `kafka` adapter. Publishing writes to the same outbox as the postgres adapter,
 * so publishing inside a transaction works identically; the relay ships the outbox
 * to Kafka and subscribers are kafkajs consumer groups.
 *
 * Nothing here waits for Kafka to start: a process that starts while the brokers are
 * down publishes into the outbox, `check()` fails naming the reason, and the relay and
 * every subscription connect once the brokers answer.
 */
/** The start of `check()`'s reason while the relay has not joined (see start()). */
const relayStartProblem = "relay could not start";

export class KafkaBus implements Bus {
  readonly kind = "kafka" as const;
  private readonly subscriptions = new Set<KafkaSubscription>();
  private readonly admin: Admin;
  private readonly producer: Producer;
  private readonly topics: TopicEnsurer;
  private readonly probe: KafkaProbe;
  private readonly relayTarget: RelayTarget;
  private relay: PostgresConsumer | undefined;
  private relayRetry: NodeJS.Timeout | undefined;
  private closing = false;
  private connecting: Promise<void> | undefined;

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
    this.topics = new TopicEnsurer(this.admin, () => this.connect(), settings);
    this.probe = new KafkaProbe(settings.brokers);
    this.relayTarget = { producer: this.producer, topics: this.topics, connect: () => this.connect() };
  }

  /**
   * Starts the relay, and starts it again (backing off 250 ms doubling to 5 s) for as long as its first
   * connection to PostgreSQL fails: a replica starting under load (a connection that took longer than its
   * timeout) must not be left without a relay, its outbox never shipped, until it is restarted.
   */
  start(backoffMs = 250): void {
    if (this.settings.relay === false || this.closing) return;
    const relay = startRelay(this.pool, this.relayTarget, this.tuning, this.logger);
    this.relay = relay;
    relay.ready.then(
      () => {
        if (this.relayTarget.problem?.startsWith(relayStartProblem)) this.relayTarget.problem = undefined;
      },
      (err: Error) => {
        this.relayTarget.problem = `${relayStartProblem}: ${err.message}`;
        this.logger.warn({ err, retryInMs: backoffMs }, "bus: kafka relay could not start; retrying");
        this.relayRetry = setTimeout(() => this.start(Math.min(backoffMs * 2, 5_000)), backoffMs);
      },
    );
  }

  /** Connects the admin client and the producer once; a failed attempt is forgotten so the next call tries again. */
  private connect(): Promise<void> {
    this.connecting ??= Promise.all([this.admin.connect(), this.producer.connect()]).then(
      () => {},
      (err) => {
        this.connecting = undefined;
        throw err;
      },
    );
    return this.connecting;
  }

  publish(events: PublishInput | PublishInput[], opts?: PublishOptions): Promise<void> {
    return this.outbox.publish(events, opts);
  }

  async subscribe(opts: SubscribeOptions): Promise<Subscription> {
    const sub = new KafkaSubscription({
      kafka: this.kafka,
      topics: this.topics,
      settings: this.settings,
      options: resolveSubscribeOptions(opts),
      pool: this.pool,
      logger: this.logger,
    });
    this.subscriptions.add(sub);
    // With the brokers up, subscribe returns once the member has joined its group. With them down,
    // kafkajs would retry for many seconds; the member joins in the background instead.
    if (await this.probe.answers()) await sub.started;
    return {
      close: async () => {
        this.subscriptions.delete(sub);
        await sub.close();
      },
    };
  }

  async check(): Promise<void> {
    await this.pool.query("SELECT 1 FROM bus.offsets LIMIT 1");
    await this.probe.check();
    const problem = this.relayTarget.problem ?? [...this.subscriptions].find((s) => s.problem)?.problem;
    if (problem) throw new Error(`kafka: ${problem}`);
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.relayRetry);
    this.onClose();
    await Promise.all([...this.subscriptions].map((s) => s.close()));
    this.subscriptions.clear();
    await this.outbox.close();
    // The relay stops after the batch it is shipping, so the producer is still needed until then.
    await this.relay?.close();
    await this.producer.disconnect();
    await this.admin.disconnect();
    await this.probe.close();
  }
}
