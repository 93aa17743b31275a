import type { AuditEntry } from "./audit.js";
import { actorOf } from "./auth.js";

/** Callers, actions and targets tracked at once; past it the rest share one window, so memory stays bounded. */
const MAX_TRACKED = 10_000;

interface Window {
  /** The latest refusal, whose row stands for the suppressed ones. */
  last: AuditEntry;
  /** Refusals since the recorded one, not recorded on their own. */
  suppressed: number;
}

export interface DenialThrottle {
  /** Records the refusal now when it is the first of its caller, action and target in this window; otherwise counts it. */
  denied(entry: AuditEntry): void;
  /** Ends the window: one row per caller, action and target with refusals suppressed, holding their count. */
  flush(): Promise<void>;
  /** Stops the timer and flushes. */
  close(): Promise<void>;
}

/**
 * Keeps a flood of refusals (a client retrying with a revoked key, a scanner) from filling the
 * audit trail: per caller, action and target, the first refusal of each window is recorded at
 * once, and the others as one row at the window's end whose `after.suppressed` counts them.
 * Every window therefore adds at most two rows per caller, action and target.
 */
export function createDenialThrottle(write: (entry: AuditEntry) => Promise<void>, windowMs: number): DenialThrottle {
  let windows = new Map<string, Window>();
  const flush = async () => {
    const ended = windows;
    windows = new Map();
    await Promise.all(
      [...ended.values()]
        .filter((w) => w.suppressed > 0)
        .map((w) => write({ ...w.last, after: { ...(w.last.after as object | undefined), suppressed: w.suppressed } })),
    );
  };
  const timer = setInterval(() => void flush(), windowMs);
  timer.unref();
  return {
    denied(entry) {
      let key = JSON.stringify([actorOf(entry.principal), entry.action, entry.target]);
      if (!windows.has(key) && windows.size >= MAX_TRACKED) key = "overflow";
      const w = windows.get(key);
      if (w) {
        w.suppressed++;
        w.last = entry;
        return;
      }
      windows.set(key, { last: entry, suppressed: 0 });
      void write(entry);
    },
    flush,
    async close() {
      clearInterval(timer);
      await flush();
    },
  };
}
