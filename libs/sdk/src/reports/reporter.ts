import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { create, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type SelfTestReport, SelfTestReportSchema } from "@opsplane/contracts";
import type { PoolProbe, SdkLogger } from "../contracts.js";
import { OnceLog } from "../logger.js";
import type { PluginMetric } from "../plugins.js";
import type { InterfaceStats } from "../stats/interface-stats.js";
import { RuntimeSampler } from "../stats/runtime-sampler.js";
import { httpCall, type NetFailure } from "../transport/net-thread.js";

export interface ReporterOptions {
  app: string;
  env: string;
  /** The registered instance id (or the degraded instance's local one); reports wait for it. */
  instanceId: () => string | undefined;
  stats: InterfaceStats;
  log: SdkLogger;
  /** Plugin timings and the loaded plugins (PluginHost). */
  plugins?: { takeMetrics(): PluginMetric[]; loaded(): string[] };
  runtime?: RuntimeSampler;
  /** Default 30 s (seed step 13). */
  intervalMs?: number;
  /** OPSPLANE_REPORT_URL: where each report is POSTed; unset, reports are only kept for the terminal. */
  url?: string;
  /** Extra headers for the POST (e.g. credentials monitor-center asks for). */
  headers?: () => Record<string, string>;
  /** Per POST, default 5 s. */
  timeoutMs?: number;
  now?: () => number;
}

/**
 * Builds a self-test report every interval, the first one after a delay derived from the
 * instance id so a fleet started together spreads its reports over the interval; POSTs each as
 * proto3 JSON (SelfTestReport) when a URL is set, and keeps the last one for the terminal.
 * Building is synchronous and small; delivery is fire-and-forget with a timeout: no request
 * ever waits for it.
 */
export class Reporter {
  private readonly pools: PoolProbe[] = [];
  private readonly runtime: RuntimeSampler;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private sequence = 0;
  private lastReport: SelfTestReport | undefined;
  private timer: NodeJS.Timeout | undefined;
  private delivering: Promise<void> | undefined;
  private nextAt: number | undefined;
  private readonly deliveryLog: OnceLog;

  constructor(private readonly options: ReporterOptions) {
    this.runtime = options.runtime ?? new RuntimeSampler();
    this.intervalMs = options.intervalMs ?? 30_000;
    this.now = options.now ?? Date.now;
    this.deliveryLog = new OnceLog(options.log);
  }

  /** A pool reported from the next report on (sdk.pool). */
  addPool(probe: PoolProbe): void {
    this.pools.push(probe);
  }

  /** Schedules the reports: the first after the instance's stagger delay, then every interval. */
  start(): void {
    if (this.timer) return;
    const id = this.options.instanceId() ?? "";
    this.schedule(staggerDelay(id, this.intervalMs));
  }

  /** Stops the schedule and waits for a delivery under way; `final` first builds and sends one last report. */
  async stop(final = false): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.nextAt = undefined;
    if (final && this.options.instanceId() !== undefined) this.deliver(this.build());
    await this.delivering;
  }

  /** The last report built, for the terminal's `GET /opsplane/v1/report`. */
  last(): SelfTestReport | undefined {
    return this.lastReport;
  }

  lastJson(): JsonValue | undefined {
    return this.lastReport && toJson(SelfTestReportSchema, this.lastReport, explicit);
  }

  /** When the next scheduled report is due (epoch ms), if one is. */
  nextReportAt(): number | undefined {
    return this.nextAt;
  }

  /** Builds the report of the window since the previous one and keeps it as the last. */
  build(): SelfTestReport {
    const window = this.options.stats.takeWindow();
    const runtime = this.runtime.sample();
    const int = (n: number) => BigInt(Math.round(n));
    const report = create(SelfTestReportSchema, {
      app: this.options.app,
      env: this.options.env,
      instanceId: this.options.instanceId() ?? "",
      sequence: BigInt(++this.sequence),
      reportedAt: new Date(this.now()).toISOString(),
      intervalMs: int(window.intervalMs),
      sdkVersion,
      runtime: {
        ...runtime,
        cpuUserUs: int(runtime.cpuUserUs),
        cpuSystemUs: int(runtime.cpuSystemUs),
        heapUsedBytes: int(runtime.heapUsedBytes),
        heapLimitBytes: int(runtime.heapLimitBytes),
        rssBytes: int(runtime.rssBytes),
      },
      pools: this.pools.map((probe) => {
        try {
          const { used, max, waiting } = probe.read();
          return { name: probe.name, kind: probe.kind, used, max, waiting: waiting ?? 0 };
        } catch (err) {
          return { name: probe.name, kind: probe.kind, error: (err as Error)?.message ?? String(err) };
        }
      }),
      interfaces: window.interfaces.map((i) => ({
        ...i,
        requests: int(i.requests),
        errors: int(i.errors),
        withinNormal: int(i.withinNormal),
        withinTolerable: int(i.withinTolerable),
        beyond: int(i.beyond),
        governance: Object.fromEntries(Object.entries(i.governance).map(([k, v]) => [k, int(v)])),
      })),
      pluginMetrics: (this.options.plugins?.takeMetrics() ?? []).map((m) => ({ ...m, calls: int(m.calls), errors: int(m.errors) })),
      plugins: this.options.plugins?.loaded() ?? [],
    });
    this.lastReport = report;
    return report;
  }

  private schedule(delayMs: number): void {
    this.nextAt = this.now() + delayMs;
    this.timer = setTimeout(() => {
      this.schedule(this.intervalMs);
      if (this.options.instanceId() === undefined) return;
      try {
        this.deliver(this.build());
      } catch (err) {
        this.options.log.warn(`self-test report not built: ${(err as Error)?.message}`);
      }
    }, delayMs);
    this.timer.unref();
  }

  /** POSTs the report; a failing monitor-center costs one log line until a report gets through again. */
  private deliver(report: SelfTestReport): void {
    const url = this.options.url;
    if (!url) return;
    if (this.delivering) {
      this.options.log.warn(`self-test report ${report.sequence} not sent to ${url}: the previous one is still being delivered`);
      return;
    }
    const timeoutMs = this.options.timeoutMs ?? 5000;
    this.delivering = httpCall(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...this.options.headers?.() },
      body: JSON.stringify(toJson(SelfTestReportSchema, report, explicit)),
      timeoutMs,
    })
      .then((res) => {
        if (res.status < 200 || res.status > 299) throw new Error(`answered HTTP ${res.status}`);
        this.deliveryLog.resolved(`self-test reports delivered to ${url} again`);
      })
      .catch((err: unknown) => {
        const e = err as Error & Partial<NetFailure>;
        const why = e.timedOut ? `no answer within ${timeoutMs} ms` : (e.reason ?? e.message ?? String(err));
        this.deliveryLog.problem(
          why,
          `self-test report ${report.sequence} not delivered to ${url}: ${why} (logged once until one gets through)`,
        );
      })
      .finally(() => {
        this.delivering = undefined;
      });
  }
}

/** Every field written, zeros included: a reader of plain JSON sees `"errors": "0"`, not a missing key. */
const explicit = { alwaysEmitImplicit: true } as const;

/** Where in the interval an instance reports: sha256 of its id, spread uniformly over [0, interval). */
export function staggerDelay(instanceId: string, intervalMs: number): number {
  const h = createHash("sha256").update(instanceId).digest().readUInt32BE(0);
  return Math.floor((h / 2 ** 32) * intervalMs);
}

/** The SDK's package.json version (two folders up from src/reports and from dist/reports). */
const sdkVersion = (JSON.parse(readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8")) as { version: string }).version;
