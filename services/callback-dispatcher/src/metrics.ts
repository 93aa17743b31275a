import { dropReasons } from "@opsplane/store";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** The dispatcher's own metrics; rule and environment labels are bounded by configuration. */
export function createDispatcherMetrics(registry: Registry) {
  const registers = [registry];
  const decisionsDropped = new Counter({
    name: "callback_dispatcher_decisions_dropped_total",
    help: "Decisions not recorded, by reason: queue_full (PostgreSQL too slow or down), unstorable (PostgreSQL refused the row), shutdown (still queued at exit)",
    labelNames: ["reason"] as const,
    registers,
  });
  // Every reason is exported from the start, at 0, so a rate or an alert on it has a series to read.
  for (const reason of dropReasons) decisionsDropped.inc({ reason }, 0);
  return {
    callbacks: new Counter({
      name: "callback_dispatcher_callbacks_total",
      help: "Callbacks handled, by rule, target environment, reason and upstream status class",
      labelNames: ["rule", "target", "reason", "status_class"] as const,
      registers,
    }),
    upstreamSeconds: new Histogram({
      name: "callback_dispatcher_upstream_duration_seconds",
      help: "Time from forwarding a callback to the upstream's response headers",
      labelNames: ["target"] as const,
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    extractionFailures: new Counter({
      name: "callback_dispatcher_extraction_failures_total",
      help: "Callbacks whose business-object id could not be read, by rule and reason",
      labelNames: ["rule", "reason"] as const,
      registers,
    }),
    registrations: new Counter({
      name: "callback_dispatcher_registrations_total",
      help: "Business objects registered by agents, by environment",
      labelNames: ["env"] as const,
      registers,
    }),
    registrationRefusals: new Counter({
      name: "callback_dispatcher_registration_refusals_total",
      help: "Agent requests refused (rules or registrations): agent_not_bound, agent_bound_elsewhere, production_environment, id_not_claimable",
      labelNames: ["reason"] as const,
      registers,
    }),
    decisionsDropped,
    ruleSetVersion: new Gauge({ name: "callback_dispatcher_rule_set_version", help: "Rule-set version in force", registers }),
  };
}

export type DispatcherMetrics = ReturnType<typeof createDispatcherMetrics>;

/** Counts one callback; the labelled child is looked up once per label set (the hot path runs this per request). */
export function callbackCounter(metrics: DispatcherMetrics): (rule: string, target: string, reason: string, status: number) => void {
  const children = new Map<string, { inc(): void }>();
  return (rule, target, reason, status) => {
    const statusClass = `${Math.floor(status / 100)}xx`;
    const key = `${rule}\u0000${target}\u0000${reason}\u0000${statusClass}`;
    let child = children.get(key);
    if (!child) {
      child = metrics.callbacks.labels({ rule, target, reason, status_class: statusClass });
      children.set(key, child);
    }
    child.inc();
  };
}

/** Observes the upstream's time to response headers; the labelled child is looked up once per environment. */
export function upstreamTimer(metrics: DispatcherMetrics): (env: { name: string }, seconds: number) => void {
  const children = new Map<string, { observe(v: number): void }>();
  return (env, seconds) => {
    let child = children.get(env.name);
    if (!child) {
      child = metrics.upstreamSeconds.labels({ target: env.name });
      children.set(env.name, child);
    }
    child.observe(seconds);
  };
}
