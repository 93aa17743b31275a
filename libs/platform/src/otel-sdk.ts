// Starts tracing as it is loaded: `./otel.ts` loads it only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
import { readFileSync } from "node:fs";
import path from "node:path";
import { DiagLogLevel, diag } from "@opentelemetry/api";
import { getNodeAutoInstrumentations } from "@opentelemetry/auto-instrumentations-node";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { otelDiagnostics } from "./otel-diagnostics.js";

function serviceName(): string {
  if (process.env.OTEL_SERVICE_NAME) return process.env.OTEL_SERVICE_NAME;
  const main = require.main?.filename;
  if (!main) return "opsplane";
  try {
    // A service's main is dist/main.js, beside its package.json's folder.
    const pkg = JSON.parse(readFileSync(path.join(path.dirname(main), "..", "package.json"), "utf8")) as { name?: string };
    return (pkg.name ?? "opsplane").replace(/^@opsplane\//, "");
  } catch {
    return "opsplane";
  }
}

const service = serviceName();
const sdk = new NodeSDK({
  serviceName: service,
  instrumentations: [getNodeAutoInstrumentations({ "@opentelemetry/instrumentation-fs": { enabled: false } })],
});
sdk.start();
// OTEL_LOG_LEVEL, when set, gives the SDK its own console logger (NodeSDK set it up); else its complaints reach the
// service's log. Only now: loading pino before the SDK started would leave it uninstrumented (no trace ids in logs).
if (!process.env.OTEL_LOG_LEVEL) diag.setLogger(otelDiagnostics(service), DiagLogLevel.WARN);
// Flush spans on the way out; the service's own shutdown runs on the same signals.
process.once("beforeExit", () => void sdk.shutdown());
