import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * An OTLP/HTTP endpoint that accepts spans and keeps nothing: with OTEL_EXPORTER_OTLP_ENDPOINT
 * set to it, a service process runs with tracing on (its trace context reaches its events)
 * without a collector.
 */
export async function startOtlpSink(): Promise<{ url: string; stop(): Promise<void> }> {
  const server = http.createServer((req, res) => req.resume().on("end", () => res.end()));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
