import path from "node:path";
import { migrate, readMigrations } from "@opsplane/store";
import type pg from "pg";
import type { Bus } from "./bus.js";
import { KafkaBus } from "./kafka-bus.js";
import { createKafka, type KafkaSettings } from "./kafka-client.js";
import { type BusLogger, silentLogger } from "./logger.js";
import { Outbox } from "./outbox.js";
import { PostgresBus } from "./postgres-bus.js";
import { type ConsumerTuning, defaultConsumerTuning } from "./postgres-consumer.js";
import type { TraceContext } from "./postgres-log.js";
import { DEFAULT_RETENTION_MS, startRetention } from "./retention.js";

export interface CreateBusOptions {
  kind: "postgres" | "kafka";
  /** The service's pool; the bus keeps its tables in the `bus` schema of that database. */
  pool: pg.Pool;
  /** CloudEvents `source` of the events this process publishes, e.g. "/opsplane/config-center". */
  source: string;
  /** Required for kind "kafka". */
  kafkaBrokers?: string[];
  /** Further kafka settings (client id, session timeout, partitions and replicas of created topics, relay on/off). */
  kafka?: Omit<KafkaSettings, "brokers">;
  logger?: BusLogger;
  /** Trace context for events published without one (wire OpenTelemetry's propagator here). */
  traceContext?: () => TraceContext | undefined;
  /** Events and inbox rows older than this are deleted (default 7 days). */
  retentionMs?: number;
  /** How often the retention sweep runs (default 10 minutes). */
  retentionCheckMs?: number;
  /** Postgres log consumers: safety poll and standby take-over interval. */
  consumer?: Partial<ConsumerTuning>;
}

/** Where the SQL migrations ship: beside dist/ at run time, beside src/ under tsx. */
export const busMigrationsDir = path.join(__dirname, "../migrations");

/** Applies the bus schema's migrations; createBus does this, so call it only to prepare a database ahead. */
export async function migrateBus(pool: pg.Pool): Promise<string[]> {
  return migrate(pool, "bus", await readMigrations(busMigrationsDir));
}

export async function createBus(o: CreateBusOptions): Promise<Bus> {
  const logger = o.logger ?? silentLogger;
  await migrateBus(o.pool);
  const outbox = new Outbox(o.pool, { source: o.source, ...(o.traceContext ? { traceContext: o.traceContext } : {}) });
  const tuning: ConsumerTuning = { ...defaultConsumerTuning, ...o.consumer };
  const stopRetention = startRetention(o.pool, o.retentionMs ?? DEFAULT_RETENTION_MS, o.retentionCheckMs ?? 600_000, logger);
  if (o.kind === "postgres") return new PostgresBus(o.pool, outbox, tuning, logger, stopRetention);
  if (!o.kafkaBrokers?.length) throw new Error("bus: kind kafka needs kafkaBrokers");
  const settings: KafkaSettings = { ...o.kafka, brokers: o.kafkaBrokers };
  const bus = new KafkaBus(o.pool, outbox, createKafka(settings, logger), settings, tuning, logger, stopRetention);
  bus.start();
  return bus;
}
