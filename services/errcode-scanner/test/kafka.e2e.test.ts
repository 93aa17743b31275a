// errcode-scanner as a real process on the kafka bus against a real broker: an event from a
// pipeline crosses the broker into the scanner, and the scanner's answer crosses it back out
// to another consumer, with the trace context in the CloudEvents headers both ways. And a
// scanner started while Kafka is down says so on /readyz, then becomes ready by itself.
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { ArtifactPublishedSchema, fromKafkaRecord, toEventData, toKafkaRecord, topics } from "@opsplane/contracts";
import {
  createTestDatabase,
  eventually,
  KafkaBroker,
  KafkaUnavailable,
  readTopic,
  type ServiceProcess,
  startOtlpSink,
  startServiceProcess,
  testKafkaBrokers,
} from "@opsplane/testing";
import { Kafka, logLevel } from "kafkajs";
import { writeZip } from "./support/zip-writer.js";

const MAIN = path.join(__dirname, "..", "dist", "main.js");
const TIMEOUT_MS = 60_000;

const started: Array<{ stop(): Promise<void> }> = [];
after(async () => {
  for (const s of started.reverse()) await s.stop().catch(() => {});
});

/** errcode-scanner from its build, as `make run` starts it, on the kafka bus and a database of its own. */
async function startScanner(brokers: string, env: Record<string, string> = {}): Promise<ServiceProcess> {
  const db = await createTestDatabase();
  started.push({ stop: () => db.drop() });
  const scanner = await startServiceProcess(MAIN, {
    DATABASE_URL: db.url,
    BUS: "kafka",
    KAFKA_BROKERS: brokers,
    AUTH_API_KEYS: "",
    ...env,
  });
  started.push(scanner);
  return scanner;
}

test("artifact.published from a pipeline crosses Kafka into the scanner process, and its scan.completed reaches another consumer on the same trace", async (t) => {
  const brokers = testKafkaBrokers();
  if (!brokers) return t.skip("no Kafka broker");

  // The artifact repository the pipeline published to. The name is new each run: a broker given
  // in KAFKA_BROKERS may still hold the results of earlier runs.
  const artifactName = `app-${randomBytes(4).toString("hex")}.jar`;
  const jar = writeZip([{ name: "META-INF/MANIFEST.MF", data: Buffer.from("Manifest-Version: 1.0\r\n") }]);
  const sha256 = createHash("sha256").update(jar).digest("hex");
  const repo = http.createServer((req, res) => (req.url === `/releases/${artifactName}` ? res.end(jar) : res.writeHead(404).end()));
  await new Promise<void>((resolve) => repo.listen(0, "127.0.0.1", resolve));
  started.push({ stop: async () => void repo.close() });
  const repoUrl = `http://127.0.0.1:${(repo.address() as AddressInfo).port}`;
  // Tracing on in the scanner: spans go to a collector that only says "received".
  const collector = await startOtlpSink();
  started.push(collector);

  const scanner = await startScanner(brokers.join(","), {
    ERRCODE_BASES: "com.bank.core.BizException",
    ERRCODE_ARTIFACT_URL_PREFIXES: `${repoUrl}/releases/`,
    OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
    OTEL_METRICS_EXPORTER: "none",
    OTEL_LOGS_EXPORTER: "none",
  });
  await scanner.ready();

  // Another team's consumer of scan results, reading the records as they are on the wire.
  const results = await readTopic(brokers, topics.errcodeScanCompleted.name);
  started.push(results);

  // The pipeline publishes straight to Kafka, a CloudEvent in binary mode inside its own trace.
  const traceId = randomBytes(16).toString("hex");
  const pipelineSpan = randomBytes(8).toString("hex");
  const record = toKafkaRecord({
    id: randomUUID(),
    source: "/ci/pipeline",
    type: topics.artifactPublished.type,
    time: new Date().toISOString(),
    key: "app",
    traceparent: `00-${traceId}-${pipelineSpan}-01`,
    data: toEventData(
      topics.artifactPublished,
      create(ArtifactPublishedSchema, { url: `${repoUrl}/releases/${artifactName}`, sha256, artifactName }),
    ),
  });
  const producer = new Kafka({ clientId: "e2e-pipeline", brokers, logLevel: logLevel.NOTHING }).producer({ allowAutoTopicCreation: false });
  await producer.connect();
  await producer.send({ topic: topics.artifactPublished.name, messages: [record] });
  await producer.disconnect();

  const message = await eventually(
    "scan.completed for the artifact",
    () => results.records.find((m) => (JSON.parse(String(m.value)) as { artifactName?: string }).artifactName === artifactName),
    TIMEOUT_MS,
    100,
  );
  const { headers } = message;
  assert.equal(headers.ce_type, topics.errcodeScanCompleted.type);
  assert.equal(headers.ce_source, "/opsplane/errcode-scanner");
  assert.equal(headers.ce_specversion, "1.0");
  const completed = fromKafkaRecord(message);
  assert.equal((completed.data as { status: string }).status, "succeeded");
  assert.equal((completed.data as { sha256: string }).sha256, sha256);
  // Same trace as the pipeline's publish, from a span of the scanner's own.
  const [, tracedId, parentSpan] = (headers.ce_traceparent ?? "").split("-");
  assert.equal(tracedId, traceId, `ce_traceparent ${headers.ce_traceparent} continues the pipeline's trace`);
  assert.notEqual(parentSpan, pipelineSpan);
});

test("kafka down when the scanner starts: /readyz is 503 naming the broker, then 200 once it is up, without a restart", async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), "opsplane-e2e-kafka-"));
  started.push({ stop: async () => rmSync(dataDir, { recursive: true, force: true }) });
  let broker: KafkaBroker;
  try {
    broker = await KafkaBroker.create({ dataDir });
  } catch (err) {
    if (err instanceof KafkaUnavailable) return t.skip(err.message);
    throw err;
  }
  started.push(broker);

  const scanner = await startScanner(broker.url);
  const down = await scanner.readyz();
  assert.equal(down.status, 503);
  assert.deepEqual(down.body.failing, ["bus"]);
  // (/readyz shows no addresses: the broker's is replaced by "<address>".)
  assert.match(down.body.checks?.bus ?? "", /^kafka \S+: Connection error: connect ECONNREFUSED/);

  await broker.start();
  const up = await eventually(
    "/readyz to turn 200",
    async () => {
      const r = await scanner.readyz();
      return r.status === 200 && r;
    },
    TIMEOUT_MS,
    100,
  );
  assert.equal(up.body.checks?.bus, "ok");
});
