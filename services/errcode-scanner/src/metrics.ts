import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export function createScannerMetrics(registry: Registry) {
  return {
    scans: new Counter({
      name: "errcode_scans_total",
      help: "Scans finished, by status",
      labelNames: ["status"] as const,
      registers: [registry],
    }),
    classes: new Counter({
      name: "errcode_classes_scanned_total",
      help: "Class files read (rate() gives classes per second)",
      registers: [registry],
    }),
    classesPerSecond: new Gauge({
      name: "errcode_scan_classes_per_second",
      help: "Classes per second of the last finished scan",
      registers: [registry],
    }),
    duration: new Histogram({
      name: "errcode_scan_duration_seconds",
      help: "Time from start to end of a scan (download, read, extract, validate, store)",
      buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    takenOver: new Counter({
      name: "errcode_scans_taken_over_total",
      help: "Scans this replica took over from a replica that stopped renewing its lease (died, or lost the database)",
      registers: [registry],
    }),
    violations: new Counter({
      name: "errcode_violations_total",
      help: "Violations found, by rule",
      labelNames: ["rule"] as const,
      registers: [registry],
    }),
  };
}

export type ScannerMetrics = ReturnType<typeof createScannerMetrics>;
