import { availableParallelism } from "node:os";
import { type EventLoopUtilization, type IntervalHistogram, monitorEventLoopDelay, performance } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";

/** The process over one window: what the report's `runtime` carries. */
export interface RuntimeSample {
  cpuUserUs: number;
  cpuSystemUs: number;
  /** (user + system) / window: 1 is one core busy all the time. */
  cpuShare: number;
  cpuCores: number;
  eventLoopUtilization: number;
  eventLoopDelayP50Ms: number;
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
  heapUsedBytes: number;
  heapLimitBytes: number;
  rssBytes: number;
}

/** How often the delay histogram samples (perf_hooks' own timer, not the event loop's). */
const delayResolutionMs = 20;

/**
 * Samples CPU time, event-loop utilisation and delay, heap and RSS between two calls of
 * `sample()`. The histogram records each timer interval whole, resolution included (an idle loop
 * shows 20 ms): the delay reported is what exceeds the resolution.
 */
export class RuntimeSampler {
  private readonly delay: IntervalHistogram;
  private cpu: NodeJS.CpuUsage;
  private elu: EventLoopUtilization;
  private since: number;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.delay = monitorEventLoopDelay({ resolution: delayResolutionMs });
    this.delay.enable();
    this.cpu = process.cpuUsage();
    this.elu = performance.eventLoopUtilization();
    this.since = this.now();
  }

  /** The process since the previous sample (or construction); starts the next window. */
  sample(): RuntimeSample {
    const at = this.now();
    const windowUs = Math.max(1, (at - this.since) * 1000);
    const cpu = process.cpuUsage(this.cpu);
    const elu = performance.eventLoopUtilization(this.elu);
    const heap = getHeapStatistics();
    const delayMs = (ns: number) => (Number.isFinite(ns) ? Math.max(0, ns / 1e6 - delayResolutionMs) : 0);
    const sample: RuntimeSample = {
      cpuUserUs: cpu.user,
      cpuSystemUs: cpu.system,
      cpuShare: (cpu.user + cpu.system) / windowUs,
      cpuCores: availableParallelism(),
      eventLoopUtilization: elu.utilization,
      // An empty histogram reports NaN (mean) or 9.2e18 (min); percentiles are 0 then.
      eventLoopDelayP50Ms: this.delay.count > 0 ? delayMs(this.delay.percentile(50)) : 0,
      eventLoopDelayP99Ms: this.delay.count > 0 ? delayMs(this.delay.percentile(99)) : 0,
      eventLoopDelayMaxMs: this.delay.count > 0 ? delayMs(this.delay.max) : 0,
      heapUsedBytes: heap.used_heap_size,
      heapLimitBytes: heap.heap_size_limit,
      rssBytes: process.memoryUsage.rss(),
    };
    this.cpu = process.cpuUsage();
    this.elu = performance.eventLoopUtilization();
    this.delay.reset();
    this.since = at;
    return sample;
  }

  close(): void {
    this.delay.disable();
  }
}
