// A consumer-group member in its own process, so a test can kill it mid-batch the
// way a crash would. It records every event it receives in public.member_log and
// stops (hangs inside the handler) on the event after STALL_AFTER. BATCH_SIZE is its
// subscription's batchSize (default 100).
import { createBus } from "@opsplane/bus";
import { createPool } from "@opsplane/store";

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`member: ${name} is not set`);
  return v;
};

async function main(): Promise<void> {
  const kind = env("BUS_KIND") === "kafka" ? "kafka" : "postgres";
  const stallAfter = Number(env("STALL_AFTER"));
  const pool = createPool(env("MEMBER_DATABASE_URL"), { schema: "public", applicationName: "bus-member" });
  const bus = await createBus({
    kind,
    pool,
    source: "/test/member",
    kafka: { relay: false, sessionTimeoutMs: 6000, heartbeatIntervalMs: 500 },
    ...(kind === "kafka" ? { kafkaBrokers: env("KAFKA_BROKERS").split(",") } : {}),
  });
  let received = 0;
  await bus.subscribe({
    group: env("GROUP"),
    topics: [env("TOPIC")],
    batchSize: Number(process.env.BATCH_SIZE ?? 100),
    handler: async (e) => {
      await pool.query("INSERT INTO member_log (n, attempt) VALUES ($1, $2)", [(e.data as { n: number }).n, e.attempt]);
      if (++received > stallAfter) await new Promise(() => {});
    },
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
