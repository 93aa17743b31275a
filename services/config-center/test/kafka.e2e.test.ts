// Two config-center replicas as real processes on the kafka bus against a real broker, sharing one
// database: a parameter changed through replica A's API reaches an instance whose socket is on
// replica B (and one on A), the change crossing the broker between the two processes as a
// CloudEvent that carries the trace of the person's request.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { after, test } from "node:test";
import { fromKafkaRecord, topics } from "@opsplane/contracts";
import {
  createTestDatabase,
  eventually,
  readTopic,
  type ServiceProcess,
  startOtlpSink,
  startServiceProcess,
  testKafkaBrokers,
} from "@opsplane/testing";
import { authApiKeys, call, Instance, type Json } from "./harness.js";

const MAIN = path.join(__dirname, "..", "dist", "main.js");
const TIMEOUT_MS = 60_000;

const started: Array<{ stop(): Promise<void> }> = [];
after(async () => {
  for (const s of started.reverse()) await s.stop().catch(() => {});
});

test("a change made through replica A crosses Kafka to replica B's instance, its config.changed carrying the request's trace", async (t) => {
  const brokers = testKafkaBrokers();
  if (!brokers) return t.skip("no Kafka broker");

  const db = await createTestDatabase();
  started.push({ stop: () => db.drop() });
  // Tracing on in both replicas: spans go to a collector that only says "received".
  const collector = await startOtlpSink();
  started.push(collector);
  // Replica names are new each run: each names its push consumer group, and a broker given in
  // KAFKA_BROKERS may still hold the groups (and offsets) of earlier runs.
  const run = randomBytes(4).toString("hex");
  const replica = async (name: string): Promise<ServiceProcess> => {
    const p = await startServiceProcess(MAIN, {
      DATABASE_URL: db.url,
      BUS: "kafka",
      KAFKA_BROKERS: brokers.join(","),
      REDIS_URL: "",
      AUTH_API_KEYS: authApiKeys,
      REPLICA_ID: `e2e-${run}-${name}`,
      PUSH_CYCLE_MS: "50",
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_METRICS_EXPORTER: "none",
      OTEL_LOGS_EXPORTER: "none",
    });
    started.push(p);
    return p;
  };
  // One after the other: the first applies the database's migrations.
  const a = await replica("a");
  const b = await replica("b");
  // Ready: each replica's push consumer has joined its group on the broker.
  await a.ready();
  await b.ready();

  // Another team's consumer of config.changed, reading the records as they are on the wire.
  const changed = await readTopic(brokers, topics.configChanged.name);
  started.push(changed);

  // The instance this is about, on B, and a witness on A: each replica consumes in a group of its
  // own, so both hear of the change.
  const loan = { appId: "loan", secret: "loan-secret-0123" };
  const onB = await Instance.start(b.url, loan, { hostName: "b", env: "uat" });
  const onA = await Instance.start(a.url, loan, { hostName: "a", env: "uat" });
  started.push({
    stop: async () => {
      for (const i of [onA, onB]) i.close();
    },
  });

  // The person's change, made inside a trace of their own (the key is new each run, for the reader).
  const key = `timeouts-${run}`;
  const traceId = randomBytes(16).toString("hex");
  const callerSpan = randomBytes(8).toString("hex");
  const set = await call(a.url, "PUT", `/config/v1/items/technical/loan/uat/${key}`, {
    role: "operator",
    body: { value: { connectMs: 500 } },
    headers: { traceparent: `00-${traceId}-${callerSpan}-01` },
  });
  assert.equal(set.status, 200, set.body.message);

  for (const i of [onB, onA]) {
    const got = await i.until("technical", key, (c) => c.value?.connectMs === 500);
    assert.equal(got.revision, set.body.version);
  }

  const record = await eventually(
    `config.changed for ${key}`,
    () => changed.records.find((r) => (JSON.parse(String(r.value)) as Json).key === key),
    TIMEOUT_MS,
    100,
  );
  const { headers } = record;
  assert.equal(headers.ce_specversion, "1.0");
  assert.equal(headers.ce_type, topics.configChanged.type);
  assert.equal(headers.ce_source, "/opsplane/config-center");
  assert.ok(headers.ce_id, "ce_id");
  assert.equal(String(record.key), "config");
  const event = fromKafkaRecord(record);
  assert.equal(Number((event.data as Json).version), set.body.version);
  // The same trace as the request, from a span of replica A's own.
  const [, tracedId, parentSpan] = (headers.ce_traceparent ?? "").split("-");
  assert.equal(tracedId, traceId, `ce_traceparent ${headers.ce_traceparent} continues the request's trace`);
  assert.notEqual(parentSpan, callerSpan);
});
