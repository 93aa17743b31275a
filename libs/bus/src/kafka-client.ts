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
  /** Replicas of each partition of topics the bus creates; default: the broker's default.replication.factor. */
  replicationFactor?: number;
  /** Run the outbox relay in this process (default true; replicas elect one active relay). */
  relay?: boolean;
}

// Answers kafkajs logs at ERROR although it retries them itself, as a fresh topic or group settles
// (seen on a new broker: "This server does not host this topic-partition" or "…is not the leader for
// that topic-partition" right after creation, on the response and on the send kafkajs then retries), and
// "Topic creation errors", logged for every topic another service created first (kafkajs's admin
// then counts that as done; any other reason reaches create() below and is thrown with the broker's words).
const settlingErrors =
  /does not host this topic-partition|no leader for this topic-partition|not the leader for that topic-partition|coordinator is not available|not the correct coordinator|group is rebalancing|topic creation errors/i;

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
        // The reason is in `error`, or in the message itself ("Failed to send messages: <reason>", retried).
        if (level === logLevel.ERROR && !settlingErrors.test(`${message} ${String(extra.error ?? "")}`))
          logger.error({ kafka: extra }, `kafkajs: ${message}`);
        else logger.warn({ kafka: extra }, `kafkajs: ${message}`);
      },
  });
}

/** Creates topics the first time this process needs them (no-op when they exist). */
export class TopicEnsurer {
  private readonly known = new Set<string>();

  constructor(
    private readonly admin: Admin,
    /** Connects the admin client (once); called first so a broker that was down at start is tried again. */
    private readonly connect: () => Promise<void>,
    private readonly settings: Pick<KafkaSettings, "numPartitions" | "replicationFactor">,
  ) {}

  async ensure(topics: Iterable<string>): Promise<void> {
    const wanted = [...new Set(topics)].filter((t) => !this.known.has(t));
    if (wanted.length === 0) return;
    await this.connect();
    // Asked first because kafkajs logs an error for every topic it is asked to create that exists.
    const existing = new Set(await this.admin.listTopics());
    const missing = wanted.filter((t) => !existing.has(t));
    if (missing.length > 0) await this.create(missing);
    for (const t of wanted) this.known.add(t);
  }

  private async create(topics: string[]): Promise<void> {
    const { numPartitions, replicationFactor } = this.settings;
    try {
      await this.admin.createTopics({
        waitForLeaders: true,
        topics: topics.map((topic) => ({
          topic,
          ...(numPartitions ? { numPartitions } : {}),
          ...(replicationFactor ? { replicationFactor } : {}),
        })),
      });
    } catch (err) {
      // kafkajs says only "Topic creation errors"; the broker's reasons are inside.
      const reasons = (err as { errors?: Error[] }).errors?.map((e) => e.message);
      if (!reasons?.length) throw err;
      throw new Error(`could not create topic ${topics.join(", ")}: ${[...new Set(reasons)].join("; ")}`);
    }
  }
}

/**
 * Asks the cluster for its metadata without kafkajs's retries, so `/readyz` learns within a
 * second that the brokers do not answer, and why.
 */
export class KafkaProbe {
  private readonly admin: Admin;
  private connected = false;

  constructor(private readonly brokers: string[]) {
    this.admin = new Kafka({
      clientId: "opsplane-probe",
      brokers,
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1000,
      requestTimeout: 1500,
      retry: { retries: 0 },
    }).admin();
  }

  /** Resolves when a broker answers a metadata request; throws with the reason otherwise. */
  async check(): Promise<void> {
    try {
      if (!this.connected) {
        await this.admin.connect();
        this.connected = true;
      }
      await this.admin.describeCluster();
    } catch (err) {
      this.connected = false;
      await this.admin.disconnect().catch(() => {});
      throw new Error(`kafka ${this.brokers.join(",")}: ${(err as Error).message}`);
    }
  }

  /** Whether a broker answers right now. */
  answers(): Promise<boolean> {
    return this.check().then(
      () => true,
      () => false,
    );
  }

  async close(): Promise<void> {
    this.connected = false;
    await this.admin.disconnect();
  }
}
