import { BoundHistogram, entryOf, newList, newMap, TalliedCounter, type Tally } from "@opsplane/platform";
import { dropReasons } from "@opsplane/store";
import { Counter, Gauge, type Registry } from "prom-client";

/** `status_class` label values, by hundreds: built once rather than per callback. */
const statusClasses = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];

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
  // Tallies are found by rule, then target, then reason (strings a callback carries already, their
  // hashes cached), then status hundreds: no key is built and hashed per callback.
  const callbacks = new TalliedCounter({
    name: "callback_dispatcher_callbacks_total",
    help: "Callbacks handled, by rule, target environment, reason and upstream status class",
    labelNames: ["rule", "target", "reason", "status_class"],
    registers,
  });
  const callbackTallies = new Map<string, Map<string, Map<string, Tally[]>>>();
  const extractionFailures = new Counter({
    name: "callback_dispatcher_extraction_failures_total",
    help: "Callbacks whose business-object id could not be read, by rule and reason",
    labelNames: ["rule", "reason"] as const,
    registers,
  });
  return {
    /** Counts one callback (read by the next scrape of `callback_dispatcher_callbacks_total`). */
    countCallback(rule: string, target: string, reason: string, status: number): void {
      const byTarget = entryOf(callbackTallies, rule, newMap<string, Map<string, Tally[]>>);
      const byStatus = entryOf(entryOf(byTarget, target, newMap<string, Tally[]>), reason, newList<Tally>);
      const hundreds = Math.floor(status / 100);
      let tally = byStatus[hundreds];
      if (!tally) {
        tally = callbacks.tally({ rule, target, reason, status_class: statusClasses[hundreds] ?? `${hundreds}xx` });
        byStatus[hundreds] = tally;
      }
      tally.count++;
    },
    upstreamSeconds: new BoundHistogram({
      name: "callback_dispatcher_upstream_duration_seconds",
      help: "Time from forwarding a callback to the upstream's response headers",
      labelNames: ["target"],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    extractionFailures,
    /** Counts a callback whose id a rule could not read (one function for all callbacks, not a closure each). */
    countExtractionFailure: (f: { rule: string; reason: string }) => extractionFailures.inc({ rule: f.rule, reason: f.reason }),
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
    payloadsDropped: new Counter({
      name: "callback_dispatcher_payloads_dropped_total",
      help: "Callbacks recorded without their bytes (not replayable) because CALLBACK_QUEUE_MAX_BYTES of bodies were waiting to be written",
      registers,
    }),
    heldCallbacks: new Gauge({
      name: "callback_dispatcher_held_callbacks",
      help: "Callbacks held right now, waiting for a registration that may be in flight (rules with holdMs)",
      registers,
    }),
    holds: new Counter({
      name: "callback_dispatcher_holds_total",
      help: "Callbacks held for their registration, by outcome: registered (it came), expired (holdMs passed), full (too many held; not held)",
      labelNames: ["outcome"] as const,
      registers,
    }),
    ruleSetVersion: new Gauge({ name: "callback_dispatcher_rule_set_version", help: "Rule-set version in force", registers }),
  };
}

export type DispatcherMetrics = ReturnType<typeof createDispatcherMetrics>;

/** Observes the upstream's time to response headers; the environment's observer is bound once. */
export function upstreamTimer(metrics: DispatcherMetrics): (env: { name: string }, seconds: number) => void {
  const observers = new Map<string, (seconds: number) => void>();
  return (env, seconds) => {
    let observe = observers.get(env.name);
    if (!observe) {
      observe = metrics.upstreamSeconds.bind({ target: env.name });
      observers.set(env.name, observe);
    }
    observe(seconds);
  };
}
