import { spawn } from "node:child_process";
import { rm } from "node:fs/promises";
import { KafkaContainer } from "@testcontainers/kafka";
import { PostgreSqlContainer } from "@testcontainers/postgresql";
import { RedisContainer } from "@testcontainers/redis";
import { Redis } from "ioredis";
import { dockerAnswers } from "./docker.js";
import { startEmbeddedPostgres } from "./embedded-postgres.js";
import { freePort } from "./free-port.js";
import { KafkaBroker } from "./kafka-broker.js";

export interface Dependency {
  url: string;
  /** Where it came from: "env", "testcontainers" or "local". */
  origin: "env" | "testcontainers" | "local";
  stop(): Promise<void>;
}

const nothingToStop = async () => {};

/** PostgreSQL: DATABASE_URL, else testcontainers, else embedded-postgres under `dataDir`. */
export async function resolvePostgres(dataDir: string): Promise<Dependency> {
  const env = process.env.DATABASE_URL;
  if (env) return { url: env, origin: "env", stop: nothingToStop };
  if (await dockerAnswers()) {
    const c = await new PostgreSqlContainer("postgres:16-alpine").start();
    return { url: c.getConnectionUri(), origin: "testcontainers", stop: async () => void (await c.stop()) };
  }
  const pg = await startEmbeddedPostgres(dataDir, await freePort());
  return { url: pg.url, origin: "local", stop: pg.stop };
}

/** Redis: REDIS_URL, else testcontainers, else `redis-server` from PATH on a free port. */
export async function resolveRedis(): Promise<Dependency> {
  const env = process.env.REDIS_URL;
  if (env) return { url: env, origin: "env", stop: nothingToStop };
  if (await dockerAnswers()) {
    const c = await new RedisContainer("redis:7-alpine").start();
    return { url: c.getConnectionUrl(), origin: "testcontainers", stop: async () => void (await c.stop()) };
  }
  const port = await freePort();
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  const spawnError = new Promise<never>((_, reject) =>
    proc.once("error", (e) => reject(new Error(`redis-server could not start: ${e.message}`))),
  );
  const url = `redis://127.0.0.1:${port}`;
  await Promise.race([waitForRedis(url), spawnError]);
  return {
    url,
    origin: "local",
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once("exit", () => resolve());
        proc.kill("SIGTERM");
      }),
  };
}

/**
 * Kafka: KAFKA_BROKERS, else testcontainers, else a local broker from the Maven Central jars with
 * its data in `dataDir` (emptied first: each test run starts on a new cluster). Throws
 * KafkaUnavailable, whose message is the one line to print, when none of them can be had.
 */
export async function resolveKafka(dataDir: string): Promise<Dependency> {
  const env = process.env.KAFKA_BROKERS;
  if (env) return { url: env, origin: "env", stop: nothingToStop };
  if (await dockerAnswers()) {
    const c = await new KafkaContainer("confluentinc/cp-kafka:7.6.1").withKraft().start();
    return { url: `${c.getHost()}:${c.getMappedPort(9093)}`, origin: "testcontainers", stop: async () => void (await c.stop()) };
  }
  await rm(dataDir, { recursive: true, force: true });
  const broker = await KafkaBroker.create({ dataDir });
  await broker.start();
  return { url: broker.url, origin: "local", stop: () => broker.stop() };
}

async function waitForRedis(url: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await r.connect();
      await r.ping();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`redis-server did not answer at ${url}: ${(err as Error).message}`);
      await new Promise((res) => setTimeout(res, 50));
    } finally {
      r.disconnect();
    }
  }
}
