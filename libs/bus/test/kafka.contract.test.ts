import { test } from "node:test";
import { createBus } from "@opsplane/bus";
import { testKafkaBrokers } from "@opsplane/testing";
import { runContract } from "./contract.js";

// Without a broker testKafkaBrokers prints the one line saying so, and the suite counts as skipped.
const brokers = testKafkaBrokers();
if (!brokers) test("bus contract (kafka)", { skip: "no Kafka broker" });
else {
  // Short sessions so the group notices a killed member in seconds, not the default 30.
  const kafka = { sessionTimeoutMs: 6000, heartbeatIntervalMs: 500 };
  runContract({
    kind: "kafka",
    createBus: (pool) =>
      createBus({ kind: "kafka", pool, source: "/test/bus", kafkaBrokers: brokers, kafka, consumer: { takeoverCheckMs: 200 } }),
    memberEnv: { BUS_KIND: "kafka", KAFKA_BROKERS: brokers.join(",") },
    timeoutMs: 60_000,
  });
}
