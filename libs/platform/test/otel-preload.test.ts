import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { test } from "node:test";

const preload = path.join(__dirname, "..", "src", "otel.ts");

/** Loads the tracing preload in a fresh process, as a service's first import does, and reports what it loaded. */
function afterPreload(env: Record<string, string>): { otelModules: number; httpWrapped: boolean } {
  const script = `require(${JSON.stringify(preload)});
    const otelModules = Object.keys(require.cache).filter((k) => k.includes("@opentelemetry")).length;
    console.log(JSON.stringify({ otelModules, httpWrapped: "__wrapped" in require("node:http").request }));`;
  const out = execFileSync(process.execPath, ["--import", "tsx", "-e", script], {
    env: { PATH: process.env.PATH, ...env },
    encoding: "utf8",
  });
  return JSON.parse(out.trim().split("\n").pop()!) as { otelModules: number; httpWrapped: boolean };
}

test("without OTEL_EXPORTER_OTLP_ENDPOINT a service loads none of the tracing SDK (13 MiB of heap, half a second of start)", () => {
  assert.deepEqual(afterPreload({}), { otelModules: 0, httpWrapped: false });
});

test("with OTEL_EXPORTER_OTLP_ENDPOINT the preload starts tracing before http is used: http is instrumented", () => {
  const got = afterPreload({
    OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9",
    OTEL_METRICS_EXPORTER: "none",
    OTEL_LOGS_EXPORTER: "none",
  });
  assert.ok(got.otelModules > 0);
  assert.equal(got.httpWrapped, true);
});
