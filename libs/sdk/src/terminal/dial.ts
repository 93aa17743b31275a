import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";

/** The app's own check run by a dial test: it gets the monitor's challenge; what it returns (or throws) is its result. */
export type DialCheck = (challenge: string, signal: AbortSignal) => unknown;

export interface DialCheckOutcome {
  name: string;
  ok: boolean;
  /** What the check returned, as text, or why it failed. */
  detail: string;
  elapsedMs: number;
}

/** The checks `sdk.dialCheck(name, fn)` registered, run together for each dial test. */
export class DialChecks {
  private readonly checks = new Map<string, { fn: DialCheck; timeoutMs: number }>();

  /** Adds (or replaces) the check `name`; it fails when it takes longer than `timeoutMs` (default 2 s). */
  add(name: string, fn: DialCheck, options: { timeoutMs?: number } = {}): void {
    this.checks.set(name, { fn, timeoutMs: options.timeoutMs ?? 2000 });
  }

  names(): string[] {
    return [...this.checks.keys()].sort();
  }

  /** Every check at once, each bounded by its timeout; the outcomes sorted by name. */
  async run(challenge: string): Promise<DialCheckOutcome[]> {
    return Promise.all(this.names().map((name) => runOne(name, this.checks.get(name)!, challenge)));
  }
}

async function runOne(name: string, check: { fn: DialCheck; timeoutMs: number }, challenge: string): Promise<DialCheckOutcome> {
  const start = performance.now();
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new Error(`timed out after ${check.timeoutMs} ms`);
      abort.abort(err);
      reject(err);
    }, check.timeoutMs);
  });
  try {
    const value = await Promise.race([Promise.resolve().then(() => check.fn(challenge, abort.signal)), timeout]);
    return { name, ok: true, detail: asText(value), elapsedMs: performance.now() - start };
  } catch (err) {
    return { name, ok: false, detail: (err as Error)?.message ?? String(err), elapsedMs: performance.now() - start };
  } finally {
    clearTimeout(timer);
  }
}

function asText(value: unknown): string {
  const text = value === undefined ? "" : typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
  return text.length > 512 ? text.slice(0, 512) : text;
}

/**
 * The dial test's answer: hex SHA-256 of the challenge, the instance id and each check's
 * `name=ok:detail` (or `name=fail:detail`), one per line, in the order given (sorted by name).
 * monitor-center recomputes it from the response to verify it.
 */
export function dialAnswer(
  challenge: string,
  instanceId: string,
  checks: ReadonlyArray<Pick<DialCheckOutcome, "name" | "ok" | "detail">>,
): string {
  const lines = [challenge, instanceId, ...checks.map((c) => `${c.name}=${c.ok ? "ok" : "fail"}:${c.detail}`)];
  return createHash("sha256").update(lines.join("\n")).digest("hex");
}
