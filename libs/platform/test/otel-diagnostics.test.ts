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
