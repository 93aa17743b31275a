import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { type BusLogger, createBus, RELAY_GROUP } from "@opsplane/bus";
import { testKafkaBrokers } from "@opsplane/testing";
import { event, numberOf, range, recorder, runContract, uniqueTopic } from "./contract.js";

// Without a broker testKafkaBrokers prints the one line saying so, and the suite counts as skipped.
const brokers = testKafkaBrokers();
if (!brokers) test("bus contract (kafka)", { skip: "no Kafka broker" });
else {
  // Short sessions so the group notices a killed member in seconds, not the default 30; several
  // partitions, as production topics have.
  const kafka = { sessionTimeoutMs: 6000, heartbeatIntervalMs: 500, numPartitions: 3 };
  const ctx = runContract({
    kind: "kafka",
    createBus: (pool) =>
      createBus({ kind: "kafka", pool, source: "/test/bus", kafkaBrokers: brokers, kafka, consumer: { takeoverCheckMs: 200 } }),
    memberEnv: { BUS_KIND: "kafka", KAFKA_BROKERS: brokers.join(",") },
    timeoutMs: 60_000,
  });

  test("kafka: a replica that starts on topics that already exist logs no error", async () => {
    const topic = uniqueTopic();
    const first = await ctx.newBus();
    await (await first.subscribe({ group: "restart", topics: [topic], handler: async () => {} })).close();

    const errors: string[] = [];
    const logger: BusLogger = { info: () => {}, warn: () => {}, error: (_obj, msg) => void errors.push(String(msg)) };
    const bus = await createBus({ kind: "kafka", pool: ctx.pool, source: "/test/bus", kafkaBrokers: brokers, kafka, logger });
    try {
      const r = recorder();
      await bus.subscribe({ group: "restart", topics: [topic], handler: r.handler });
      await bus.publish(event(topic, 1));
      await ctx.wait("the event", () => r.handled.length >= 1);
    } finally {
      await bus.close();
    }
    assert.deepEqual(errors, []);
  });

  test("kafka: a backlog bigger than the broker takes in one request reaches the group whole", async () => {
    const bus = await ctx.newBus();
    const topic = uniqueTopic();
    const r = recorder();
    await bus.subscribe({ group: "backlog", topics: [topic], handler: r.handler });
    // 1,500 events of 1 KB: the relay reads them 1,000 at a time, over the broker's 1 MB message limit.
    const pad = "x".repeat(1024);
    await bus.publish(range(1, 1500).map((n) => event(topic, n, { data: { n, pad } })));
    await ctx.wait("all 1,500 events", () => r.handled.length >= 1500);
    assert.deepEqual(r.handled.map(numberOf), range(1, 1500));
  });

  test("kafka: an event bigger than the broker accepts is dead-lettered by the relay, and the events behind it still arrive", async () => {
    const bus = await ctx.newBus();
    const topic = uniqueTopic();
    const r = recorder();
    await bus.subscribe({ group: "oversize", topics: [topic], handler: r.handler });
    const hugeId = randomUUID();
    await bus.publish([event(topic, 1), event(topic, 2, { id: hugeId, data: { n: 2, pad: "x".repeat(1_500_000) } }), event(topic, 3)]);
    await ctx.wait("the event after the huge one", () => r.handled.some((e) => numberOf(e) === 3));
    assert.deepEqual(r.handled.map(numberOf), [1, 3]);
    const { rows } = await ctx.pool.query("SELECT group_name, error FROM bus.dead_letters WHERE event_id = $1", [hugeId]);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].group_name, RELAY_GROUP);
    assert.match(rows[0].error, /larger than the max message size/);
  });
}
