import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { trace } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { createBus } from "@opsplane/bus";
import { activeTraceContext, tracedBus } from "@opsplane/platform";
import { createPool, type Pool } from "@opsplane/store";
import { createTestDatabase, eventually, type TestDatabase } from "@opsplane/testing";

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
provider.register();

let db: TestDatabase;
let pool: Pool;
before(async () => {
  db = await createTestDatabase();
  pool = createPool(db.url, { schema: "tracing_test", applicationName: "tracing-test" });
});
after(async () => {
  await pool.end();
  await db.drop();
  await provider.shutdown();
});

test("a consumer's span continues the producer's trace across the bus", async () => {
  const bus = tracedBus(await createBus({ kind: "postgres", pool, source: "/test", traceContext: activeTraceContext }));
  try {
    const seen: string[] = [];
    const sub = await bus.subscribe({
      group: "g",
      topics: ["traced"],
      handler: async () => {
        seen.push(trace.getActiveSpan()?.spanContext().traceId ?? "none");
      },
    });
    const producerTraceId = await trace.getTracer("test").startActiveSpan("change config", async (span) => {
      await bus.publish({ topic: "traced", type: "test.v1.Traced", data: { n: 1 } });
      span.end();
      return span.spanContext().traceId;
    });
    await eventually("the event handled", () => seen.length === 1);
    assert.deepEqual(seen, [producerTraceId]);
    const consumer = exporter.getFinishedSpans().find((s) => s.name === "traced process");
    assert.equal(consumer?.spanContext().traceId, producerTraceId);
    await sub.close();
  } finally {
    await bus.close();
  }
});
