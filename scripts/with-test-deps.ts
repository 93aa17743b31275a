// Finds or starts what the tests need (see libs/testing: env URL, then testcontainers,
// then local binaries), runs the command given as arguments with DATABASE_URL, REDIS_URL
// and KAFKA_BROKERS set, and stops what it started. `make test` runs the suites through it.
import { spawn } from "node:child_process";
import { type Dependency, resolveKafka, resolvePostgres, resolveRedis } from "@opsplane/testing";

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
  const kafka = await resolveKafka();
  if (kafka) started.push(kafka);
  console.log(`# test deps: postgres (${pg.origin}), redis (${redis.origin}), kafka (${kafka ? kafka.origin : "none"})`);
  const env = { ...process.env, DATABASE_URL: pg.url, REDIS_URL: redis.url, ...(kafka ? { KAFKA_BROKERS: kafka.url } : {}) };
  const child = spawn(cmd as string, args, { stdio: "inherit", env });
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on("SIGINT", forward).on("SIGTERM", forward);
  return new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}

main()
  .catch((err) => {
    console.error(`with-test-deps: ${(err as Error).message}`);
    return 1;
  })
  .then(async (code) => {
    for (const d of started.reverse()) await d.stop().catch(() => {});
    process.exit(code);
  });
