// Starts tracing as it is loaded: `./otel.ts` loads it only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
import { readFileSync } from "node:fs";
import path from "node:path";
import { getNodeAutoInstrumentations } from "@opentelemetry/auto-instrumentations-node";
import { NodeSDK } from "@opentelemetry/sdk-node";

function serviceName(): string {
  if (process.env.OTEL_SERVICE_NAME) return process.env.OTEL_SERVICE_NAME;
  const main = require.main?.filename;
  if (!main) return "opsplane";
  const pkg = JSON.parse(readFileSync(path.join(path.dirname(main), "..", "package.json"), "utf8")) as { name?: string };
  return (pkg.name ?? "opsplane").replace(/^@opsplane\//, "");
}

const sdk = new NodeSDK({
  serviceName: serviceName(),
  instrumentations: [getNodeAutoInstrumentations({ "@opentelemetry/instrumentation-fs": { enabled: false } })],
});
sdk.start();
// Flush spans on the way out; the service's own shutdown runs on the same signals.
process.once("beforeExit", () => void sdk.shutdown());
