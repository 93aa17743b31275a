import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { Bus, BusEvent, Handler, PublishInput } from "@opsplane/bus";
import { createPool, type Pool, withTransaction } from "@opsplane/store";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";

export interface Adapter {
  kind: "postgres" | "kafka";
  /** A bus as one service replica would create it. */
  createBus(pool: Pool): Promise<Bus>;
  /** Environment for a member running in a child process (see member.ts). */
  memberEnv: Record<string, string>;
  /** How long a delivery may take; Kafka group joins and rebalances take seconds. */
  timeoutMs: number;
}

export interface ContractContext {
  db: TestDatabase;
  pool: Pool;
  newBus(): Promise<Bus>;
  wait<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>): Promise<T>;
}

export const uniqueTopic = (): string => `test.${randomBytes(5).toString("hex")}`;

export const event = (topic: string, n: number, extra: Partial<PublishInput> = {}): PublishInput => ({
  topic,
  type: "test.v1.Counted",
  key: "k",
  data: { n },
  ...extra,
});

export const numberOf = (e: BusEvent): number => (e.data as { n: number }).n;

/** A handler that records what it receives, optionally failing on purpose. */
export function recorder(fail?: (e: BusEvent) => boolean): { seen: BusEvent[]; handled: BusEvent[]; handler: Handler } {
  const seen: BusEvent[] = [];
  const handled: BusEvent[] = [];
  return {
    seen,
    handled,
    handler: async (e) => {
      seen.push(e);
      if (fail?.(e)) throw new Error(`refusing event ${numberOf(e)} on attempt ${e.attempt}`);
      handled.push(e);
    },
  };
}

export const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/**
 * The behaviour every adapter owes its users. Registers file-level hooks that create
 * a database and close every bus; returns the context for adapter-specific tests.
 */
export function runContract(adapter: Adapter): ContractContext {
  const buses: Bus[] = [];
  const ctx = {
    wait: <T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>) =>
      eventually(what, probe, adapter.timeoutMs),
    newBus: async () => {
      const bus = await adapter.createBus(ctx.pool);
      buses.push(bus);
      return bus;
    },
  } as ContractContext;

  before(async () => {
    ctx.db = await createTestDatabase();
    ctx.pool = createPool(ctx.db.url, { schema: "public", applicationName: "bus-contract" });
  });
  after(async () => {
    await Promise.all(buses.map((b) => b.close()));
    await ctx.pool.end();
    await ctx.db.drop();
  });

  describe(`bus contract (${adapter.kind})`, () => {
    test("a subscriber receives each published event with its envelope", async () => {
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      const r = recorder();
      await bus.subscribe({ group: "envelope", topics: [topic], handler: r.handler });
      const id = randomUUID();
      const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
      await bus.publish(
        event(topic, 1, { id, key: "order-7", subject: "orders/7", traceparent, data: { n: 1, lines: [{ sku: "a", qty: 2 }] } }),
      );
      const [got] = await ctx.wait("the event", () => r.handled.length === 1 && r.handled);
      assert.equal(got!.id, id);
      assert.equal(got!.topic, topic);
      assert.equal(got!.type, "test.v1.Counted");
      assert.equal(got!.source, "/test/bus");
      assert.equal(got!.key, "order-7");
      assert.equal(got!.subject, "orders/7");
      assert.equal(got!.traceparent, traceparent);
      assert.deepEqual(got!.data, { n: 1, lines: [{ sku: "a", qty: 2 }] });
      assert.equal(got!.attempt, 1);
      assert.ok(!Number.isNaN(Date.parse(got!.time)), "time is an RFC 3339 timestamp");
    });

    test("an event published in a rolled-back transaction is never delivered; a committed one is", async () => {
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      const r = recorder();
      await bus.subscribe({ group: "tx", topics: [topic], handler: r.handler });
      await assert.rejects(
        withTransaction(ctx.pool, async (tx) => {
          await bus.publish(event(topic, 1), { tx });
          throw new Error("business rule failed");
        }),
        /business rule failed/,
      );
      await withTransaction(ctx.pool, (tx) => bus.publish(event(topic, 2), { tx }));
      // Same key, so had event 1 existed it would have arrived before event 2.
      await ctx.wait("the committed event", () => r.handled.length > 0);
      await bus.publish(event(topic, 3));
      await ctx.wait("a later event", () => r.handled.length >= 2);
      assert.deepEqual(r.handled.map(numberOf), [2, 3]);
    });

    test("re-publishing an event id is a no-op, so producers may retry", async () => {
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      const r = recorder();
      await bus.subscribe({ group: "dedup", topics: [topic], handler: r.handler });
      const id = randomUUID();
      await bus.publish(event(topic, 1, { id }));
      await bus.publish(event(topic, 1, { id }));
      await bus.publish(event(topic, 2));
      await ctx.wait("both events", () => r.handled.some((e) => numberOf(e) === 2));
      assert.deepEqual(r.handled.map(numberOf), [1, 2]);
    });

    test("events with the same key reach a group in publish order", async () => {
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      const r = recorder();
      await bus.subscribe({ group: "order", topics: [topic], batchSize: 17, handler: r.handler });
      const keys = ["a", "b", "c", "d"];
      const publishes: Promise<void>[] = [];
      // Concurrent publishes of single events and arrays, as a busy service would make them.
      for (let n = 1; n <= 60; n++) {
        const batch = keys.map((key) => event(topic, n, { key }));
        publishes.push(n % 3 === 0 ? bus.publish(batch) : Promise.all(batch.map((e) => bus.publish(e))).then(() => {}));
      }
      await Promise.all(publishes);
      await ctx.wait("240 events", () => r.handled.length >= 240);
      for (const key of keys) {
        assert.deepEqual(r.handled.filter((e) => e.key === key).map(numberOf), range(1, 60), `key ${key}`);
      }
    });

    test("every group gets every event, and each resumes from its own position", async () => {
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      const a = recorder();
      const subA = await bus.subscribe({ group: "billing", topics: [topic], handler: a.handler });
      await bus.publish(range(1, 10).map((n) => event(topic, n)));
      await ctx.wait("group billing to handle 10 events", () => a.handled.length >= 10);
      await subA.close();

      // A group that joins later still reads every event: billing consumed them only for itself.
      const b = recorder();
      await bus.subscribe({ group: "audit", topics: [topic], handler: b.handler });
      await bus.publish(range(11, 15).map((n) => event(topic, n)));
      await ctx.wait("group audit to handle 15 events", () => b.handled.length >= 15);
      assert.deepEqual(b.handled.map(numberOf), range(1, 15));

      // billing comes back and continues after what it handled, not from audit's position or the start.
      const a2 = recorder();
      await bus.subscribe({ group: "billing", topics: [topic], handler: a2.handler });
      await ctx.wait("group billing to catch up", () => a2.handled.length >= 5);
      assert.deepEqual(a2.handled.map(numberOf), range(11, 15));
    });

    test("a failed handler gets the event again in the same group, and later events wait for it", async () => {
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      const r = recorder((e) => numberOf(e) === 2 && e.attempt === 1);
      await bus.subscribe({ group: "retry", topics: [topic], handler: r.handler, retryBackoffMs: 10 });
      await bus.publish(range(1, 3).map((n) => event(topic, n)));
      await ctx.wait("3 handled events", () => r.handled.length >= 3);
      assert.deepEqual(r.handled.map(numberOf), [1, 2, 3]);
      assert.deepEqual(
        r.seen.filter((e) => numberOf(e) === 2).map((e) => e.attempt),
        [1, 2],
      );
    });

    test("an event whose handler keeps failing is dead-lettered and the group moves on", async () => {
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      const r = recorder((e) => numberOf(e) === 2);
      await bus.subscribe({ group: "poison", topics: [topic], handler: r.handler, maxAttempts: 3, retryBackoffMs: 10 });
      const poisonId = randomUUID();
      await bus.publish([event(topic, 1), event(topic, 2, { id: poisonId }), event(topic, 3)]);
      await ctx.wait("the event after the poison one", () => r.handled.some((e) => numberOf(e) === 3));
      assert.deepEqual(r.handled.map(numberOf), [1, 3]);
      const { rows } = await ctx.pool.query(
        "SELECT event_id, attempts, error, event->'data' AS data FROM bus.dead_letters WHERE group_name = 'poison' AND topic = $1",
        [topic],
      );
      assert.equal(rows.length, 1);
      assert.equal(rows[0].event_id, poisonId);
      assert.equal(rows[0].attempts, 3);
      assert.deepEqual(rows[0].data, { n: 2 });
      assert.match(rows[0].error, /refusing event 2/);
    });

    test("an event holding text PostgreSQL cannot store (a NUL, a lone surrogate) is dead-lettered escaped, and the group moves on", async () => {
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      const r = recorder((e) => numberOf(e) === 2);
      await bus.subscribe({ group: "poison-text", topics: [topic], handler: r.handler, maxAttempts: 2, retryBackoffMs: 10 });
      // Before: the dead letter's own insert failed (jsonb refuses \u0000), so the event was retried for ever and the group stopped.
      await bus.publish([event(topic, 1), event(topic, 2, { data: { n: 2, name: "nul\u0000name.jar", half: "\ud800" } }), event(topic, 3)]);
      await ctx.wait("the event after the poison one", () => r.handled.some((e) => numberOf(e) === 3));
      const { rows } = await ctx.pool.query(
        "SELECT event->'data' AS data, error FROM bus.dead_letters WHERE group_name = 'poison-text' AND topic = $1",
        [topic],
      );
      assert.equal(rows.length, 1);
      assert.deepEqual(rows[0].data, { n: 2, name: "nul\\u0000name.jar", half: "\uFFFD" });
    });

    test("an event from a transaction that wrote first but committed last is still delivered (no outbox gap)", async () => {
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      const r = recorder();
      await bus.subscribe({ group: "gap", topics: [topic], handler: r.handler });
      const slow = await ctx.pool.connect();
      try {
        await slow.query("BEGIN");
        await bus.publish(event(topic, 1, { key: "slow" }), { tx: slow });
        // Later publishes take later sequence numbers and commit first.
        await bus.publish(range(2, 5).map((n) => event(topic, n, { key: "fast" })));
        await slow.query("COMMIT");
      } finally {
        slow.release();
      }
      await bus.publish(event(topic, 6, { key: "fast" }));
      await ctx.wait("all 6 events", () => r.handled.length >= 6);
      assert.deepEqual(
        r.handled.map(numberOf).sort((x, y) => x - y),
        range(1, 6),
      );
    });

    test("close() lets the handler in flight finish and commits it: the group does not get it again", async () => {
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      let release!: () => void;
      const released = new Promise<void>((r) => {
        release = r;
      });
      const first: BusEvent[] = [];
      const sub = await bus.subscribe({
        group: "drain",
        topics: [topic],
        handler: async (e) => {
          first.push(e);
          await released;
        },
      });
      await bus.publish(event(topic, 1));
      await ctx.wait("the handler to start", () => first.length === 1);
      let closed = false;
      const closing = sub.close().then(() => {
        closed = true;
      });
      await new Promise((r) => setImmediate(r));
      assert.equal(closed, false, "close() waits for the handler in flight");
      release();
      await closing;

      const r = recorder();
      await bus.subscribe({ group: "drain", topics: [topic], handler: r.handler });
      await bus.publish(event(topic, 2));
      await ctx.wait("the next event", () => r.handled.length >= 1);
      assert.deepEqual(r.handled.map(numberOf), [2]);
    });

    test("no event is lost when a consumer dies mid-batch: the group redelivers what it had not committed", async () => {
      await ctx.pool.query("CREATE TABLE IF NOT EXISTS member_log (n int NOT NULL, attempt int NOT NULL)");
      const bus = await ctx.newBus();
      const topic = uniqueTopic();
      await bus.publish(range(1, 30).map((n) => event(topic, n)));
      const member = spawnMember({ ...adapter.memberEnv, GROUP: "crash", TOPIC: topic, STALL_AFTER: "10" }, ctx.db.url);
      try {
        // The member has handled 10 events and is inside the handler of the 11th.
        await ctx.wait("the member to be mid-batch", async () => (await memberReceived(ctx.pool)).length >= 11);
      } finally {
        member.kill("SIGKILL");
        if (member.exitCode === null && member.signalCode === null) await once(member, "exit");
      }
      const crashed = await memberReceived(ctx.pool);
      assert.deepEqual(crashed, range(1, 11), "the member saw events 1-11 before it died");

      const r = recorder();
      await bus.subscribe({ group: "crash", topics: [topic], handler: r.handler });
      await ctx.wait("the survivor to reach event 30", () => r.handled.some((e) => numberOf(e) === 30));
      const survivor = r.handled.map(numberOf);
      assert.ok(survivor.includes(11), "the event in flight when the member died is delivered again");
      const all = new Set([...crashed.slice(0, 10), ...survivor]);
      assert.deepEqual(
        [...all].sort((x, y) => x - y),
        range(1, 30),
        "no event lost",
      );
      assert.deepEqual(survivor, range(survivor[0]!, 30), "the survivor resumes in order from the committed offset");
    });
  });

  return ctx;
}

export function spawnMember(env: Record<string, string>, dbUrl: string): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "member.ts")], {
    env: { ...process.env, ...env, MEMBER_DATABASE_URL: dbUrl },
    stdio: ["ignore", "inherit", "inherit"],
  });
  return child;
}

export async function memberReceived(pool: Pool): Promise<number[]> {
  const { rows } = await pool.query<{ n: number }>("SELECT n FROM member_log ORDER BY n");
  return rows.map((r) => r.n);
}
