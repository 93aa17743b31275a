import type { Metric, Registry } from "prom-client";

/** One label set's observations: a count per bucket (not cumulative; the last is over every bound), their sum and count. */
interface Series {
  labels: Record<string, string>;
  buckets: number[];
  sum: number;
  count: number;
}

interface HistogramValue {
  metricName: string;
  labels: Record<string, string | number>;
  /** The series' own labels, printed after `le` and the registry's default labels. */
  sharedLabels: Record<string, string>;
  value: number;
}

interface HistogramObject {
  name: string;
  help: string;
  type: "histogram";
  aggregator: "sum";
  values: HistogramValue[];
}

/**
 * A histogram for code that observes on every request: each label set is bound once (`bind`), and an
 * observation is a bucket search and three additions. prom-client's own `observe` checks and hashes
 * the labels again and finds the bucket by its bound as a property name at every call, which cost
 * the dispatcher about a microsecond per callback for its two histograms. Registered in `registers`
 * and exposed as prom-client exposes a histogram: cumulative `_bucket` series with `le` and `+Inf`,
 * `_sum` and `_count`, the registry's default labels added.
 */
export class BoundHistogram<L extends string> {
  readonly type = "histogram" as const;
  /** Summed across cluster workers, as prom-client's histograms are. */
  readonly aggregator = "sum" as const;
  private readonly bounds: readonly number[];
  private readonly series = new Map<string, Series>();

  readonly name: string;
  readonly help: string;
  private readonly labelNames: readonly L[];

  /** As prom-client's own histogram is configured; `registers` are the registries it is shown in. */
  constructor(config: { name: string; help: string; labelNames: readonly L[]; buckets: readonly number[]; registers: Registry[] }) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames;
    this.bounds = [...config.buckets].sort((a, b) => a - b);
    // The registry reads a metric through `get()` alone; prom-client's types only name its own classes.
    for (const registry of config.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The observer of one label set; look it up once per label set, not per observation. */
  bind(labels: Record<L, string>): (value: number) => void {
    const key = this.labelNames.map((n) => labels[n]).join("\u0000");
    let s = this.series.get(key);
    if (!s) {
      s = { labels: { ...labels }, buckets: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    const series = s;
    const bounds = this.bounds;
    return (value) => {
      // A value that is no number would put NaN in the sum for good (prom-client throws instead: here that
      // would fail the request after it was answered); none is observed.
      if (!Number.isFinite(value)) return;
      let i = 0;
      while (i < bounds.length && value > bounds[i]!) i++;
      series.buckets[i]!++;
      series.sum += value;
      series.count++;
    };
  }

  /** The metric as prom-client's registry prints it: each series' labels after `le` and the default labels, as prom-client's histograms print them. */
  async getForPromString(): Promise<HistogramObject> {
    const values: HistogramValue[] = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += s.buckets[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { le: this.bounds[i]! }, sharedLabels: s.labels, value: cumulative });
      }
      values.push({ metricName: `${this.name}_bucket`, labels: { le: "+Inf" }, sharedLabels: s.labels, value: s.count });
      values.push({ metricName: `${this.name}_sum`, labels: {}, sharedLabels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: {}, sharedLabels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** The metric as an object (`registry.getMetricsAsJSON()`): each value's labels in one set. */
  async get(): Promise<HistogramObject> {
    const metric = await this.getForPromString();
    for (const v of metric.values) v.labels = { ...v.labels, ...v.sharedLabels };
    return metric;
  }

  /** Forgets every observation (prom-client's `registry.resetMetrics()`); bound observers keep counting from zero. */
  reset(): void {
    for (const s of this.series.values()) {
      s.buckets.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
