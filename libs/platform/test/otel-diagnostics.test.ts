import assert from "node:assert/strict";
import { mock, test } from "node:test";
import { otelDiagnostics } from "../src/otel-diagnostics.js";

test("the tracing SDK's complaints reach the log at most once a minute, the next one saying how many were left out", () => {
  mock.timers.enable({ apis: ["Date"], now: 0 });
  try {
    const lines: Record<string, unknown>[] = [];
    const diag = otelDiagnostics("svc", { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    const refused = JSON.stringify({ message: "connect ECONNREFUSED 10.0.0.9:4318", code: "ECONNREFUSED" });
    diag.error(refused);
    mock.timers.tick(30_000);
    diag.error(refused);
    diag.warn("@opentelemetry/sdk-trace", "Dropped 12 spans because maxQueueSize reached");
    mock.timers.tick(30_000);
    diag.warn("@opentelemetry/sdk-trace", "Dropped 40 spans because maxQueueSize reached");
    assert.deepEqual(
      lines.map(({ level, service, msg, leftOut }) => ({
        level,
        service,
        msg: String(msg).replace(/ \(spans may be lost.*/, ""),
        leftOut,
      })),
      [
        { level: 50, service: "svc", msg: "tracing: connect ECONNREFUSED 10.0.0.9:4318", leftOut: undefined },
        { level: 40, service: "svc", msg: "tracing: @opentelemetry/sdk-trace: Dropped 40 spans because maxQueueSize reached", leftOut: 2 },
      ],
    );
  } finally {
    mock.timers.reset();
  }
});

test("the collector's URL in those lines leaves out a user and password it holds", () => {
  const before = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = "http://otuser:S3cr3tPw@collector.internal:4318/";
  try {
    const lines: string[] = [];
    otelDiagnostics("svc", { write: (line: string) => lines.push(line) }).error("connect ECONNREFUSED 10.0.0.9:4318");
    assert.equal(lines.length, 1);
    assert.ok(!lines[0]!.includes("S3cr3tPw") && !lines[0]!.includes("otuser"), lines[0]);
    assert.match(lines[0]!, /OTEL_EXPORTER_OTLP_ENDPOINT=http:\/\/collector\.internal:4318\/\)/);
  } finally {
    if (before === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = before;
  }
});
