import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** config-center's own metrics; labels are bounded (kinds, actions, reasons). */
export function createConfigMetrics(registry: Registry) {
  const registers = [registry];
  return {
    connectedInstances: new Gauge({
      name: "config_center_connected_instances",
      help: "Instance sockets open on this replica",
      registers,
    }),
    pushes: new Counter({
      name: "config_center_pushes_total",
      help: "Change messages sent to instances, by whether they were live pushes or reconnect catch-ups",
      labelNames: ["mode"] as const,
      registers,
    }),
    pushLatency: new Histogram({
      name: "config_center_push_latency_seconds",
      help: "Time from a change reaching this replica (from the bus) to the instance acknowledging it, on this replica's clock",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    pushCycleSeconds: new Histogram({
      name: "config_center_push_cycle_seconds",
      help: "Time one scan cycle takes to compute and send its pushes",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    changes: new Counter({
      name: "config_center_changes_total",
      help: "Committed changes, by kind and action",
      labelNames: ["kind", "action"] as const,
      registers,
    }),
    registrationRefusals: new Counter({
      name: "config_center_registration_refusals_total",
      help: "Token and registration requests refused, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    socketRefusals: new Counter({
      name: "config_center_socket_refusals_total",
      help: "Instance socket messages refused, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    offlineMarked: new Counter({
      name: "config_center_instances_marked_offline_total",
      help: "Instances marked offline, by why: their socket closed, or heartbeats stopped (sweep)",
      labelNames: ["why"] as const,
      registers,
    }),
    historyPruned: new Counter({
      name: "config_center_history_pruned_total",
      help: "Change records pruned from the history (older than HISTORY_RETENTION_DAYS, beyond the newest HISTORY_KEEP_MIN per item)",
      registers,
    }),
    businessCacheErrors: new Counter({
      name: "config_center_business_cache_errors_total",
      help: "Writes to the Redis business-parameter cache that failed (a resync follows)",
      registers,
    }),
  };
}

export type ConfigMetrics = ReturnType<typeof createConfigMetrics>;
