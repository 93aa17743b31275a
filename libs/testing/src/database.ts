import { randomBytes } from "node:crypto";
import pg from "pg";

export interface TestDatabase {
  /** Connection string of a database made for this test file alone. */
  url: string;
  drop(): Promise<void>;
}

/**
 * Creates an empty database on the server named by DATABASE_URL (set by
 * `scripts/with-test-deps`, which `make test` runs), so test files never see
 * each other's rows.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = process.env.DATABASE_URL;
  if (!admin) throw new Error("DATABASE_URL is not set: run tests with `make test` (it starts or finds PostgreSQL)");
  const name = `t_${process.pid}_${randomBytes(4).toString("hex")}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * Makes a test database refuse new connections and ends the open ones (a PostgreSQL outage as a
 * service sees it), or lets them in again; the server and every other database stay up.
 */
export async function setDatabaseOutage(databaseUrl: string, down: boolean): Promise<void> {
  const name = new URL(databaseUrl).pathname.slice(1);
  const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS ${down ? "false" : "true"}`);
    if (down) await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name]);
  } finally {
    await admin.end();
  }
}

/** REDIS_URL for tests, and a key prefix unique to this file so parallel files never collide. */
export function testRedis(): { url: string; prefix: string } {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error("REDIS_URL is not set: run tests with `make test` (it starts or finds Redis)");
  return { url, prefix: `t:${process.pid}:${randomBytes(3).toString("hex")}:` };
}

/**
 * Kafka brokers for tests, or undefined after printing the one line that says why the Kafka run is
 * skipped (with-test-deps passes on the reason it could not start a broker in KAFKA_UNAVAILABLE).
 */
export function testKafkaBrokers(): string[] | undefined {
  const brokers = process.env.KAFKA_BROKERS;
  if (!brokers) {
    const why = process.env.KAFKA_UNAVAILABLE ?? "KAFKA_BROKERS unset: run through `make test`, which starts a broker";
    console.log(`# kafka: no broker (${why}); Kafka tests skipped`);
    return undefined;
  }
  return brokers.split(",").map((b) => b.trim());
}
