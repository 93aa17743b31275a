import type { SdkLogger } from "./contracts.js";
import { isLogLevel, type LogLevel } from "./logger.js";
import type { SdkPlugin } from "./plugins.js";
import type { ResourceDeclaration } from "./resources-report.js";
import type { ThresholdOptions } from "./stats/thresholds.js";
import { readTerminalKey, terminalKeyEntries } from "./terminal/keys.js";

/** How an app joins the platform: `startSdk(options)`, or `startSdk()` reading OPSPLANE_* (optionsFromEnv). */
export interface SdkOptions {
  appId: string;
  /** The app's credentials at config-center; also the key the snapshot is sealed with. */
  secret: string;
  /** config-center's base URL, e.g. http://config-center:8083. */
  configUrl: string;
  /** The environment this instance runs in (config-center grants an app its environments). */
  env: string;
  /** The port the app serves on (registered as the node's service port). */
  servicePort: number;
  /** The SDK terminal service (dial tests, control commands); 1818 by default, 0 for any free port. */
  terminalPort?: number;
  /**
   * The address the terminal listens on. Default every interface (0.0.0.0 and ::): monitor-center and
   * control-center call it from other pods, and every request must be signed by one of
   * `terminalKeys`. `127.0.0.1` keeps it to the host (a sidecar or a port-forward).
   */
  terminalHost?: string;
  /** Free labels config-center's gray releases select instances by. */
  labels?: Record<string, string>;
  /** Technical configuration from the app itself: used below what config-center sends, and alone while degraded. */
  localConfig?: Record<string, unknown>;
  hostName?: string;
  ip?: string;
  podName?: string;
  podNamespace?: string;
  appVersion?: string;
  systemDomain?: string;
  /** Start parameters registered with the instance (the SDK adds `sdk.version` and `sdk.plugins`). */
  startParams?: Record<string, string>;
  /** Where the sealed snapshot of the last good configuration is kept; none without it. */
  snapshotDir?: string;
  /** Redis of config-center's business cache: business values are read there instead of from config-center. */
  redisUrl?: string;
  /** config-center's CONFIG_REDIS_PREFIX. */
  redisPrefix?: string;
  /** monitor-center's report endpoint; without it reports are kept for the terminal only. */
  reportUrl?: string;
  reportIntervalMs?: number;
  /** Public keys whose signatures the terminal accepts on dial tests and control commands. */
  terminalKeys?: string[];
  logLevel?: LogLevel;
  /** Where the SDK logs; by default JSON lines on stderr at `logLevel`. */
  log?: SdkLogger;
  /** Interfaces, queues and jobs reported at start-up (step 11); `sdk.declare` adds more later. */
  resources?: ResourceDeclaration;
  /** Loaded before registration, and listed in it (`startParams["sdk.plugins"]`). */
  plugins?: readonly SdkPlugin[];
  /** Latency thresholds (normal, tolerable) and maximum QPS per interface, for the self-test reports. */
  thresholds?: ThresholdOptions;
  /**
   * The terminal's shutdown command, called once its answer is sent: stop accepting, finish the
   * requests in flight, `sdk.close()`, exit. Without it the SDK closes itself and exits the process
   * (it does not know the app's servers).
   */
  onShutdown?: (command: { graceMs: number; requestedBy: string }) => unknown;
  /** Each call to config-center gives up after this long (default 5000 ms). */
  requestTimeoutMs?: number;
  /** Start-up waits at most this long for config-center before it degrades (default 20000 ms). */
  startupTimeoutMs?: number;
  /** Retries (joining, reconnecting) wait a random time up to base·2^n, at most max (defaults 1000 / 15000 ms). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Business values are compared with their source this often, so a missed push heals (default 30000 ms). */
  businessResyncMs?: number;
  /** A rebuild hook or business listener running longer is logged and no longer waited for (default 30000 ms). */
  hookTimeoutMs?: number;
}

/** A setting the SDK cannot start without, named. */
export class SdkOptionsError extends Error {
  override name = "SdkOptionsError";
}

/**
 * SdkOptions from OPSPLANE_* environment variables (auto mode, or `startSdk()` without options).
 * Every problem is named in one error: all missing variables at once, and each malformed one.
 */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): SdkOptions {
  const v = (name: string) => {
    const s = env[name]?.trim();
    return s ? s : undefined;
  };
  const required = ["OPSPLANE_CONFIG_URL", "OPSPLANE_APP_ID", "OPSPLANE_APP_SECRET", "OPSPLANE_ENV"];
  const missing = required.filter((n) => !v(n));
  if (!v("OPSPLANE_SERVICE_PORT") && !v("PORT")) missing.push("OPSPLANE_SERVICE_PORT (or PORT)");
  if (missing.length) throw new SdkOptionsError(`missing environment variable${missing.length > 1 ? "s" : ""}: ${missing.join(", ")}`);

  const port = (name: string, raw: string | undefined) => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > 65535)
      throw new SdkOptionsError(`${name} must be a port number (0-65535), not ${JSON.stringify(raw)}`);
    return n;
  };
  const millis = (name: string) => {
    const raw = v(name);
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0)
      throw new SdkOptionsError(`${name} must be a positive number of milliseconds, not ${JSON.stringify(raw)}`);
    return n;
  };
  const logLevel = v("OPSPLANE_LOG_LEVEL");
  if (logLevel !== undefined && !isLogLevel(logLevel))
    throw new SdkOptionsError(`OPSPLANE_LOG_LEVEL must be debug, info, warn, error or silent, not ${JSON.stringify(logLevel)}`);
  const servicePortName = v("OPSPLANE_SERVICE_PORT") ? "OPSPLANE_SERVICE_PORT" : "PORT";

  return {
    configUrl: checkUrl("OPSPLANE_CONFIG_URL", v("OPSPLANE_CONFIG_URL")!),
    appId: v("OPSPLANE_APP_ID")!,
    secret: v("OPSPLANE_APP_SECRET")!,
    env: v("OPSPLANE_ENV")!,
    servicePort: port(servicePortName, v(servicePortName))!,
    terminalPort: port("OPSPLANE_TERMINAL_PORT", v("OPSPLANE_TERMINAL_PORT")),
    labels: labelsFrom(v("OPSPLANE_LABELS")),
    snapshotDir: v("OPSPLANE_SNAPSHOT_DIR"),
    redisUrl: v("OPSPLANE_REDIS_URL"),
    redisPrefix: v("OPSPLANE_REDIS_PREFIX"),
    reportUrl: v("OPSPLANE_REPORT_URL") && checkUrl("OPSPLANE_REPORT_URL", v("OPSPLANE_REPORT_URL")!),
    reportIntervalMs: millis("OPSPLANE_REPORT_INTERVAL_MS"),
    startupTimeoutMs: millis("OPSPLANE_STARTUP_TIMEOUT_MS"),
    terminalHost: v("OPSPLANE_TERMINAL_HOST"),
    terminalKeys: checkTerminalKeys("OPSPLANE_TERMINAL_KEYS", terminalKeyEntries(v("OPSPLANE_TERMINAL_KEYS"))),
    logLevel: logLevel as LogLevel | undefined,
    podName: v("OPSPLANE_POD_NAME"),
    podNamespace: v("OPSPLANE_POD_NAMESPACE"),
    appVersion: v("OPSPLANE_APP_VERSION"),
    systemDomain: v("OPSPLANE_SYSTEM_DOMAIN"),
  };
}

function checkUrl(name: string, raw: string): string {
  try {
    const u = new URL(raw);
    if (u.protocol === "http:" || u.protocol === "https:") return raw.replace(/\/+$/, "");
  } catch {}
  throw new SdkOptionsError(`${name} must be an http(s) URL, not ${JSON.stringify(raw)}`);
}

/** `k=v,k2=v2`. */
function labelsFrom(raw: string | undefined): Record<string, string> | undefined {
  if (raw === undefined) return undefined;
  const labels: Record<string, string> = {};
  for (const pair of raw.split(",")) {
    if (!pair.trim()) continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new SdkOptionsError(`OPSPLANE_LABELS must be k=v pairs separated by commas; ${JSON.stringify(pair)} is not one`);
    labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return labels;
}

/** Every entry must be a key (a typo would otherwise leave the terminal refusing its callers). */
function checkTerminalKeys(name: string, entries: readonly string[]): string[] | undefined {
  if (entries.length === 0) return undefined;
  for (const entry of entries) {
    const read = readTerminalKey(entry);
    if (typeof read === "string") throw new SdkOptionsError(`${name}: ${read}`);
  }
  return [...entries];
}

/** Checks options given in code the way optionsFromEnv checks variables. */
export function checkOptions(o: SdkOptions): void {
  const missing = (["appId", "secret", "configUrl", "env"] as const).filter((k) => typeof o[k] !== "string" || !o[k]);
  if (missing.length) throw new SdkOptionsError(`startSdk: missing option${missing.length > 1 ? "s" : ""}: ${missing.join(", ")}`);
  checkUrl("configUrl", o.configUrl);
  if (!Number.isInteger(o.servicePort) || o.servicePort < 0 || o.servicePort > 65535)
    throw new SdkOptionsError(`startSdk: servicePort must be a port number (0-65535), not ${JSON.stringify(o.servicePort)}`);
  if (o.terminalKeys) checkTerminalKeys("startSdk: terminalKeys", o.terminalKeys);
  // config-center takes these as text and refuses anything else: a JavaScript caller's `{replica: 2}`
  // would otherwise start the app degraded, registration refused, instead of failing here.
  for (const k of ["hostName", "ip", "podName", "podNamespace", "appVersion", "systemDomain"] as const)
    if (o[k] !== undefined && typeof o[k] !== "string")
      throw new SdkOptionsError(`startSdk: ${k} must be a string, not ${JSON.stringify(o[k])}`);
  for (const k of ["labels", "startParams"] as const)
    for (const [name, v] of Object.entries(o[k] ?? {}))
      if (typeof v !== "string") throw new SdkOptionsError(`startSdk: ${k}.${name} must be a string, not ${JSON.stringify(v)}`);
}
