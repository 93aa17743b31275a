import { collectDefaultMetrics, Registry } from "prom-client";
import type { App } from "./app.js";
import { BoundHistogram } from "./bound-histogram.js";
import { entryOf, newList, newMap } from "./map-entry.js";
import { TalliedCounter, type Tally } from "./tallied-counter.js";

/** One registry per service, with Node's default metrics and the service name as a label. */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * RED metrics per route: request rate and errors from `http_requests_total`,
 * duration from `http_request_duration_seconds`. The route label is the route
 * template (e.g. `/reports/:id`, or the RPC path), never the raw URL, so the
 * number of series stays bounded.
 */
export function installRedMetrics(app: App, registry: Registry): RecordRequest {
  const labelNames = ["method", "route", "status_code"] as const;
  /** One label set: its request tally and its bound duration observer. */
  type Series = { requests: Tally; observe(seconds: number): void };
  // Found by route, then method, then status code: nothing is built or hashed per request.
  const byRoute = new Map<string, Map<string, Series[]>>();
  const requests = new TalliedCounter({ name: "http_requests_total", help: "HTTP requests handled", labelNames, registers: [registry] });
  const duration = new BoundHistogram({
    name: "http_request_duration_seconds",
    help: "HTTP request duration",
    labelNames,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const record: RecordRequest = (method, route, statusCode, seconds) => {
    const byStatus = entryOf(entryOf(byRoute, route, newMap<string, Series[]>), method, newList<Series>);
    let series = byStatus[statusCode];
    if (!series) {
      const labels = { method, route, status_code: String(statusCode) };
      series = { requests: requests.tally(labels), observe: duration.bind(labels) };
      byStatus[statusCode] = series;
    }
    series.requests.count++;
    series.observe(seconds);
  };
  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? "unmatched";
    if (route === "/metrics") return;
    record(req.method, route, reply.statusCode, reply.elapsedTime / 1000);
  });
  app.get("/metrics", { config: { access: "public" }, logLevel: "warn" }, async (_req, reply) => {
    reply.header("content-type", registry.contentType);
    return registry.metrics();
  });
  // Requests served before the router (the dispatcher's callbacks) are counted through the same function.
  return record;
}

/** Counts one request in the RED metrics; `route` must be a template, never a raw URL. */
export type RecordRequest = (method: string, route: string, statusCode: number, seconds: number) => void;
