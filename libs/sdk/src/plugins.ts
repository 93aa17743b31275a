/**
 * The extension API (seed 002, module 103): a plugin is the app's own code that loads with the
 * SDK, e.g. timing an important function or logging selected calls. Plugins are listed in the
 * instance's registration; one that fails to load is skipped, it never stops the app.
 */
import { performance } from "node:perf_hooks";
import type { EdgeReason, RequestObserver, RequestOutcome, SdkLogger } from "./contracts.js";

export interface PluginContext {
  /** The SDK's logger, each line tagged with the plugin's name. */
  readonly log: SdkLogger;
  /** `fn` timed: calls, failures, total and maximum duration go into the self-test report (promises timed until they settle). */
  timeFunction<A extends unknown[], R>(name: string, fn: (...args: A) => R): (...args: A) => R;
  /** `fn` logging one line per call: its name, duration, outcome and, with `args`, its arguments redacted. */
  logCalls<A extends unknown[], R>(name: string, fn: (...args: A) => R, options?: CallLogOptions): (...args: A) => R;
  /** Sees every request the SDK's adapters handled, after it finished. */
  observe(observer: RequestObserver): void;
}

export interface CallLogOptions {
  /** Log the arguments (redacted), default false. */
  args?: boolean;
  /** More key names whose values are redacted (substring, any case), beside the defaults. */
  redact?: readonly string[];
}

export interface SdkPlugin {
  /** Lower-case letters, digits, `.`, `_` and `-`. */
  readonly name: string;
  readonly version: string;
  setup(ctx: PluginContext): void | Promise<void>;
}

/** The built-in plugins' version: they change with the SDK. */
const builtinVersion = "1.0.0";

const namePattern = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const versionPattern = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/;

/** Checks the plugin's name and version (they are listed in the registration as `name@version`). */
export function definePlugin<P extends SdkPlugin>(plugin: P): P {
  if (!namePattern.test(plugin.name)) throw new TypeError(`plugin name ${JSON.stringify(plugin.name)} must match ${namePattern}`);
  if (!versionPattern.test(plugin.version))
    throw new TypeError(`plugin ${plugin.name}: version ${JSON.stringify(plugin.version)} must match ${versionPattern}`);
  return plugin;
}

/** One timed function over one report window. */
export interface PluginMetric {
  plugin: string;
  name: string;
  calls: number;
  errors: number;
  totalMs: number;
  maxMs: number;
}

/** Loads plugins, fans requests out to their observers and keeps their timings for the report. */
export class PluginHost implements RequestObserver {
  private readonly names: string[] = [];
  private observers: Array<{ plugin: string; observer: RequestObserver; failed: boolean }> = [];
  private readonly metrics = new Map<string, PluginMetric>();

  constructor(
    private readonly log: SdkLogger,
    private readonly setupTimeoutMs = 5000,
  ) {}

  /** Runs each plugin's setup in order; one that throws, rejects or takes longer than the timeout is skipped with one log line. */
  async load(plugins: readonly SdkPlugin[]): Promise<void> {
    for (const plugin of plugins) {
      const id = `${plugin.name}@${plugin.version}`;
      if (this.names.some((n) => n.startsWith(`${plugin.name}@`))) {
        this.log.warn(`plugin ${id} skipped: a plugin named ${plugin.name} is already loaded`);
        continue;
      }
      const observers: RequestObserver[] = [];
      let timer: NodeJS.Timeout | undefined;
      try {
        definePlugin(plugin);
        await Promise.race([
          plugin.setup(this.context(plugin.name, observers)),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`setup took longer than ${this.setupTimeoutMs} ms`)), this.setupTimeoutMs);
          }),
        ]);
      } catch (err) {
        this.log.warn(`plugin ${id} skipped: ${(err as Error)?.message ?? String(err)}`, { plugin: plugin.name });
        continue;
      } finally {
        clearTimeout(timer);
      }
      this.names.push(id);
      for (const observer of observers) this.observers.push({ plugin: plugin.name, observer, failed: false });
    }
  }

  /** The loaded plugins as `name@version`, in load order. */
  loaded(): string[] {
    return [...this.names];
  }

  /** The registration's `startParams["sdk.plugins"]`. */
  registration(): string {
    return this.names.join(",");
  }

  requestFinished(code: string, outcome: RequestOutcome, answeredBy?: EdgeReason): void {
    for (const entry of this.observers) {
      try {
        entry.observer.requestFinished(code, outcome, answeredBy);
      } catch (err) {
        if (entry.failed) continue;
        entry.failed = true;
        this.log.warn(`plugin ${entry.plugin}: its request observer threw (${(err as Error)?.message}); later failures are not logged`);
      }
    }
  }

  /** Timings since the previous call, functions not called left out; starts the next window. */
  takeMetrics(): PluginMetric[] {
    const out: PluginMetric[] = [];
    for (const m of this.metrics.values()) {
      if (m.calls === 0) continue;
      out.push({ ...m });
      m.calls = m.errors = m.totalMs = m.maxMs = 0;
    }
    return out;
  }

  private context(plugin: string, observers: RequestObserver[]): PluginContext {
    const log = taggedLogger(this.log, plugin);
    return {
      log,
      timeFunction: (name, fn) => timed(this.metric(plugin, name), fn),
      logCalls: (name, fn, options) => logged(log, name, fn, options),
      observe: (observer) => {
        observers.push(observer);
      },
    };
  }

  private metric(plugin: string, name: string): PluginMetric {
    const key = `${plugin}\u0000${name}`;
    let m = this.metrics.get(key);
    if (!m) {
      m = { plugin, name, calls: 0, errors: 0, totalMs: 0, maxMs: 0 };
      this.metrics.set(key, m);
    }
    return m;
  }
}

function taggedLogger(log: SdkLogger, plugin: string): SdkLogger {
  const tag = (fields?: Record<string, unknown>) => ({ ...fields, plugin });
  return {
    debug: (msg, fields) => log.debug(msg, tag(fields)),
    info: (msg, fields) => log.info(msg, tag(fields)),
    warn: (msg, fields) => log.warn(msg, tag(fields)),
    error: (msg, fields) => log.error(msg, tag(fields)),
  };
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof (v as PromiseLike<unknown> | null)?.then === "function";
}

/** Calls `fn`, then `done(failed, result|error)` once it returned, threw, or its promise settled. */
function around<A extends unknown[], R>(fn: (...args: A) => R, done: (ms: number, failed: boolean, outcome: unknown) => void) {
  return function (this: unknown, ...args: A): R {
    const start = performance.now();
    let result: R;
    try {
      result = fn.apply(this, args);
    } catch (err) {
      done(performance.now() - start, true, err);
      throw err;
    }
    if (!isThenable(result)) {
      done(performance.now() - start, false, result);
      return result;
    }
    return result.then(
      (v) => {
        done(performance.now() - start, false, v);
        return v;
      },
      (err: unknown) => {
        done(performance.now() - start, true, err);
        throw err;
      },
    ) as R;
  };
}

function timed<A extends unknown[], R>(m: PluginMetric, fn: (...args: A) => R): (...args: A) => R {
  return around(fn, (ms, failed) => {
    m.calls++;
    if (failed) m.errors++;
    m.totalMs += ms;
    if (ms > m.maxMs) m.maxMs = ms;
  });
}

function logged<A extends unknown[], R>(log: SdkLogger, name: string, fn: (...args: A) => R, options: CallLogOptions = {}) {
  const keys = redactionPattern(options.redact);
  return function (this: unknown, ...args: A): R {
    const fields: Record<string, unknown> = { fn: name };
    if (options.args) fields.args = redact(args, keys);
    return around(fn, (ms, failed, outcome) => {
      fields.ms = Math.round(ms * 1000) / 1000;
      if (failed) {
        fields.error = (outcome as Error)?.message ?? String(outcome);
        log.warn(`call ${name} failed`, fields);
      } else log.info(`call ${name}`, fields);
    }).apply(this, args);
  };
}

/** Key names whose values never reach a log line: credentials and a bank customer's identifiers. */
const defaultRedactedKeys = [
  "pass",
  "secret",
  "token",
  "auth",
  "cookie",
  "card",
  "cvv",
  "pin",
  "idno",
  "id_no",
  "idcard",
  "id_card",
  "phone",
  "mobile",
  "account",
];

function redactionPattern(extra: readonly string[] = []): RegExp {
  const escaped = [...defaultRedactedKeys, ...extra].map((k) => k.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(escaped.join("|"), "i");
}

/**
 * A copy of `value` safe to log: values under sensitive keys replaced, digit runs of 12 or more
 * (card and account numbers) cut to their last 4, long strings, arrays and deep objects cut short.
 */
export function redact(value: unknown, keys: RegExp = redactionPattern(), depth = 0): unknown {
  if (typeof value === "string") {
    const masked = value.replace(/\d{12,}/g, (d) => `****${d.slice(-4)}`);
    return masked.length > 256 ? `${masked.slice(0, 256)}…(${masked.length} chars)` : masked;
  }
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "function") return "[function]";
  if (value === null || typeof value !== "object") return value;
  if (Buffer.isBuffer(value)) return `[${value.length} bytes]`;
  if (depth >= 4) return Array.isArray(value) ? "[array]" : "[object]";
  if (Array.isArray(value)) {
    const items = value.slice(0, 20).map((v) => redact(v, keys, depth + 1));
    if (value.length > 20) items.push(`…(${value.length} items)`);
    return items;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value).slice(0, 50)) out[k] = keys.test(k) ? "[redacted]" : redact(v, keys, depth + 1);
  return out;
}

/** The built-in timing plugin: `timing.time(name, fn)` wraps a function whose durations go into the report. */
export function timingPlugin(): SdkPlugin & { time<A extends unknown[], R>(name: string, fn: (...args: A) => R): (...args: A) => R } {
  let ctx: PluginContext | undefined;
  return definePlugin({
    name: "timing",
    version: builtinVersion,
    setup: (c) => {
      ctx = c;
    },
    // Functions wrapped before the SDK started run untimed until the plugin is set up.
    time: <A extends unknown[], R>(name: string, fn: (...args: A) => R) => {
      let wrapped: ((...args: A) => R) | undefined;
      return function (this: unknown, ...args: A): R {
        if (!wrapped && ctx) wrapped = ctx.timeFunction(name, fn);
        return (wrapped ?? fn).apply(this, args);
      };
    },
  });
}

/** The built-in call-logging plugin: `calls.wrap(name, fn)` logs each call (arguments redacted, with `args: true`). */
export function callLogPlugin(
  options: CallLogOptions = {},
): SdkPlugin & { wrap<A extends unknown[], R>(name: string, fn: (...args: A) => R): (...args: A) => R } {
  let ctx: PluginContext | undefined;
  return definePlugin({
    name: "call-log",
    version: builtinVersion,
    setup: (c) => {
      ctx = c;
    },
    // Functions wrapped before the SDK started run unlogged until the plugin is set up.
    wrap: <A extends unknown[], R>(name: string, fn: (...args: A) => R) => {
      let wrapped: ((...args: A) => R) | undefined;
      return function (this: unknown, ...args: A): R {
        if (!wrapped && ctx) wrapped = ctx.logCalls(name, fn, options);
        return (wrapped ?? fn).apply(this, args);
      };
    },
  });
}
