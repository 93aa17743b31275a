import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
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

test("with the collector out of reach, the service logs that spans are being lost (the SDK alone says nothing)", async () => {
  // A span every 100 ms, exported every 100 ms to a port nothing listens on.
  const script = `require(${JSON.stringify(preload)});
    const http = require("node:http");
    const server = http.createServer((q, r) => r.end()).listen(0, "127.0.0.1", () => {
      setInterval(() => http.get("http://127.0.0.1:" + server.address().port + "/", (r) => r.resume()), 100);
    });`;
  const child = spawn(process.execPath, ["--import", "tsx", "-e", script], {
    env: {
      PATH: process.env.PATH,
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9",
      OTEL_SERVICE_NAME: "trial",
      OTEL_BSP_SCHEDULE_DELAY: "100",
      OTEL_METRICS_EXPORTER: "none",
      OTEL_LOGS_EXPORTER: "none",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const lines = createInterface({ input: child.stdout });
    const deadline = setTimeout(() => lines.close(), 30_000);
    let found: { level: number; service: string; msg: string } | undefined;
    for await (const line of lines) {
      const entry = JSON.parse(line) as { level: number; service: string; msg: string; otel?: boolean };
      if (entry.otel) {
        found = entry;
        break;
      }
    }
    clearTimeout(deadline);
    assert.ok(found, "no log line about tracing within 30 s");
    assert.equal(found.level, 50);
    assert.equal(found.service, "trial");
    assert.match(
      found.msg,
      /^tracing: connect ECONNREFUSED 127\.0\.0\.1:9 \(spans may be lost; OTEL_EXPORTER_OTLP_ENDPOINT=http:\/\/127\.0\.0\.1:9\)$/,
    );
  } finally {
    child.kill();
  }
});
