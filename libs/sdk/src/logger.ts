import type { SdkLogger } from "./contracts.js";

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export function isLogLevel(v: string): v is LogLevel {
  return v in rank;
}

/**
 * The SDK's own output: one JSON line per event on stderr (the app's stdout stays the app's), in
 * the shape the platform's services log, so the same collectors read both.
 */
export function createLogger(level: LogLevel = "info", write: (line: string) => void = (l) => process.stderr.write(l)): SdkLogger {
  const min = rank[level];
  const emit = (lvl: Exclude<LogLevel, "silent">) => (msg: string, fields?: Record<string, unknown>) => {
    if (rank[lvl] < min) return;
    write(`${JSON.stringify({ level: lvl, time: new Date().toISOString(), name: "opsplane-sdk", msg, ...fields })}\n`);
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/**
 * Logs a recurring problem once: a retry loop that fails the same way every few seconds writes one
 * line, not one per attempt. A different problem is logged again; `resolved` logs the recovery
 * (once) and re-arms the problem.
 */
export class OnceLog {
  private current: string | undefined;

  constructor(private readonly log: SdkLogger) {}

  problem(kind: string, msg: string, fields?: Record<string, unknown>, level: "warn" | "error" = "warn"): void {
    if (this.current === kind) return;
    this.current = kind;
    this.log[level](msg, fields);
  }

  resolved(msg?: string, fields?: Record<string, unknown>): void {
    if (this.current === undefined) return;
    this.current = undefined;
    if (msg) this.log.info(msg, fields);
  }
}
