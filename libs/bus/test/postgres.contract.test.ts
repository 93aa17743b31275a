import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { type BusEvent, createBus, DEFAULT_RETENTION_MS, markHandledOnce, sweepRetention } from "@opsplane/bus";
import { withTransaction } from "@opsplane/store";
import { event, numberOf, range, recorder, runContract, uniqueTopic } from "./contract.js";

const ctx = runContract({
  kind: "postgres",
  createBus: (pool) => createBus({ kind: "postgres", pool, source: "/test/bus", consumer: { takeoverCheckMs: 200 } }),
  memberEnv: { BUS_KIND: "postgres" },
  timeoutMs: 15_000,
});

test("postgres: when the active member's connection dies the group redelivers from the committed offset, with attempt 2", async () => {
  const topic = uniqueTopic();
  const [busA, busB] = [await ctx.newBus(), await ctx.newBus()];
  let release!: () => void;
  const stuck = new Promise<void>((r) => {
    release = r;
  });
  let killed = false;
  const beforeKill: BusEvent[] = [];
  const afterKill: BusEvent[] = [];
  const handler = (member: string) => async (e: BusEvent) => {
    (killed ? afterKill : beforeKill).push({ ...e, source: member });
    if (numberOf(e) === 5 && e.attempt === 1) await stuck;
  };
  await busA.subscribe({ group: "standby", topics: [topic], handler: handler("A") });
  await busB.subscribe({ group: "standby", topics: [topic], handler: handler("B") });
  await busA.publish(range(1, 20).map((n) => event(topic, n)));
  await ctx.wait("the active member to be inside event 5", () => beforeKill.length === 5);
  assert.equal(new Set(beforeKill.map((e) => e.source)).size, 1, "only one member of a group is active");

  // Kill the active member's database session, as a crashed pod or a network cut would.
  killed = true;
  const { rows } = await ctx.pool.query(
    `SELECT pg_terminate_backend(l.pid) AS ok FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.objid::bigint = (hashtextextended($1, 0) & 4294967295)`,
    [`opsplane.bus.group:standby:${topic}`],
  );
  assert.deepEqual(rows, [{ ok: true }]);
  release();

  // Whichever member wins the lock next (the standby, or the old one once reconnected) resumes
  // at the last committed offset: the dead session's handling is not trusted.
  await ctx.wait("the group to redeliver the batch", () => afterKill.filter((e) => e.attempt === 2).length >= 20);
  assert.deepEqual(
    afterKill.filter((e) => e.attempt === 2).map(numberOf),
    range(1, 20),
    "every event of the uncommitted batch is delivered again, in order",
  );
});

test("postgres: markHandledOnce lets a consumer apply a redelivered event once", async () => {
  const bus = await ctx.newBus();
  const topic = uniqueTopic();
  await ctx.pool.query("CREATE TABLE IF NOT EXISTS balances (account text PRIMARY KEY, amount int NOT NULL)");
  await ctx.pool.query("INSERT INTO balances VALUES ('acc-1', 0)");
  const attempts: number[] = [];
  await bus.subscribe({
    group: "ledger",
    topics: [topic],
    retryBackoffMs: 10,
    handler: async (e) => {
      attempts.push(e.attempt);
      await withTransaction(ctx.pool, async (tx) => {
        if (!(await markHandledOnce(tx, "ledger", e.id))) return;
        await tx.query("UPDATE balances SET amount = amount + $1 WHERE account = 'acc-1'", [(e.data as { amount: number }).amount]);
      });
      // The effect committed but the acknowledgement is lost: the bus delivers again.
      if (e.attempt === 1) throw new Error("lost ack");
    },
  });
  await bus.publish({ topic, type: "test.v1.Credited", key: "acc-1", data: { amount: 50 } });
  await ctx.wait("the redelivery", () => attempts.length >= 2);
  const { rows } = await ctx.pool.query("SELECT amount FROM balances WHERE account = 'acc-1'");
  assert.equal(rows[0].amount, 50, "credited once although delivered twice");
  assert.deepEqual(attempts, [1, 2]);
});

test("postgres: retention deletes events older than the retention, so a new group no longer sees them", async () => {
  const bus = await ctx.newBus();
  const topic = uniqueTopic();
  const oldId = randomUUID();
  await bus.publish([event(topic, 1, { id: oldId }), event(topic, 2)]);
  await ctx.pool.query("UPDATE bus.events SET created_at = now() - interval '8 days' WHERE id = $1", [oldId]);
  assert.equal(await sweepRetention(ctx.pool, DEFAULT_RETENTION_MS), 1);
  const r = recorder();
  await bus.subscribe({ group: "late", topics: [topic], handler: r.handler });
  await ctx.wait("the retained event", () => r.handled.length >= 1);
  await bus.publish(event(topic, 3));
  await ctx.wait("a new event", () => r.handled.length >= 2);
  assert.deepEqual(r.handled.map(numberOf), [2, 3]);
});

test("postgres: a group subscribed with fromBeginning false skips what was published before it joined", async () => {
  const bus = await ctx.newBus();
  const topic = uniqueTopic();
  await bus.publish(event(topic, 1));
  const r = recorder();
  await bus.subscribe({ group: "tail", topics: [topic], fromBeginning: false, handler: r.handler });
  await bus.publish(event(topic, 2));
  await ctx.wait("the new event", () => r.handled.length >= 1);
  assert.deepEqual(r.handled.map(numberOf), [2]);
});
