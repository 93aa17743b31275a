import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";
import type { App } from "./app.js";

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
  const requests = new Counter({ name: "http_requests_total", help: "HTTP requests handled", labelNames, registers: [registry] });
  const duration = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP request duration",
    labelNames,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? "unmatched";
    if (route === "/metrics") return;
    const labels = { method: req.method, route, status_code: String(reply.statusCode) };
    requests.inc(labels);
    duration.observe(labels, reply.elapsedTime / 1000);
  });
  app.get("/metrics", { config: { access: "public" }, logLevel: "warn" }, async (_req, reply) => {
    reply.header("content-type", registry.contentType);
    return registry.metrics();
  });
  // For requests served before the router: same series, labelled children looked up once per label set.
  const children = new Map<string, { requests: { inc(): void }; duration: { observe(v: number): void } }>();
  return (method, route, statusCode, seconds) => {
    const key = `${method} ${route} ${statusCode}`;
    let c = children.get(key);
    if (!c) {
      const labels = { method, route, status_code: String(statusCode) };
      c = { requests: requests.labels(labels), duration: duration.labels(labels) };
      children.set(key, c);
    }
    c.requests.inc();
    c.duration.observe(seconds);
  };
}

/** Counts one request in the RED metrics; `route` must be a template, never a raw URL. */
export type RecordRequest = (method: string, route: string, statusCode: number, seconds: number) => void;
