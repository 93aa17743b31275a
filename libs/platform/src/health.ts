import type { App } from "./app.js";

/** A readiness check: resolves when the dependency is usable, throws (with a reason) when not. */
export type Check = () => Promise<void>;

const CHECK_TIMEOUT_MS = 2_000;
/**
 * A non-critical check only reports, so it gives up well inside a probe's timeout (Kubernetes' default
 * is 1 s): waiting for a dependency that does not answer would time the probe out, and a probe that
 * times out fails, taking the pod out of the load balancer as if the check were critical.
 */
const NON_CRITICAL_CHECK_TIMEOUT_MS = 500;

export interface Readiness {
  /** Whether to send traffic: no critical check fails and the service is not shutting down. */
  ready: boolean;
  /** "ok" or why not, per check, without addresses. */
  checks: Record<string, string>;
  /** Critical checks failing. */
  failing: string[];
  /** Non-critical checks failing: reported, but the service keeps serving without them. */
  degraded: string[];
}

/**
 * Runs every check. A check named in `nonCritical` is a dependency the service can serve without
 * for a while (e.g. from memory): its failure is reported but leaves the service ready, so a
 * database blip does not take every pod out of the load balancer at once. Critical checks are given
 * 2 s, non-critical ones 0.5 s.
 */
export async function readiness(checks: Map<string, Check>, nonCritical: ReadonlySet<string>, shuttingDown: boolean): Promise<Readiness> {
  const results: Record<string, string> = {};
  await Promise.all(
    [...checks].map(async ([name, check]) => {
      try {
        await withTimeout(check(), nonCritical.has(name) ? NON_CRITICAL_CHECK_TIMEOUT_MS : CHECK_TIMEOUT_MS);
        results[name] = "ok";
      } catch (err) {
        results[name] = failureReason(err);
      }
    }),
  );
  if (shuttingDown) results.shutdown = "shutting down";
  const notOk = Object.keys(results).filter((k) => results[k] !== "ok");
  const failing = notOk.filter((k) => !nonCritical.has(k));
  return { ready: failing.length === 0, checks: results, failing, degraded: notOk.filter((k) => nonCritical.has(k)) };
}

/**
 * `/healthz` says the process is alive (always 200 while it serves), so Kubernetes
 * restarts only a wedged process. `/readyz` says whether to send traffic (200 or 503) and
 * names what fails, e.g. `{"status":"unavailable","failing":["postgres"],"degraded":[],
 * "checks":{"postgres":"connect ECONNREFUSED <address>","bus":"ok"}}`; a non-critical check
 * failing gives 200 with `"status":"degraded"`. It is public, so reasons never show an address.
 */
export function installHealth(app: App, checks: Map<string, Check>, nonCritical: ReadonlySet<string>, isShuttingDown: () => boolean): void {
  app.get("/healthz", { config: { access: "public" }, logLevel: "warn" }, async () => ({ status: "ok" }));
  app.get("/readyz", { config: { access: "public" }, logLevel: "warn" }, async (_req, reply) => {
    const r = await readiness(checks, nonCritical, isShuttingDown());
    reply.code(r.ready ? 200 : 503);
    const status = !r.ready ? "unavailable" : r.degraded.length ? "degraded" : "ready";
    return { status, failing: r.failing, degraded: r.degraded, checks: r.checks };
  });
}

// URLs (with any credentials in them), IPv4 and bracketed IPv6 addresses, and host:port pairs.
const addresses = [
  /\b[a-z][a-z0-9+.-]*:\/\/\S+/gi,
  /\[[0-9a-f:.]+\](:\d+)?/gi,
  /\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b/g,
  /\b[a-z0-9][a-z0-9.-]*:\d{2,5}\b/gi,
];

/** Why a check failed, with every address replaced by `<address>`; the error's code when it has no message. */
export function failureReason(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown };
  const text = (typeof e?.message === "string" && e.message) || (typeof e?.code === "string" && e.code) || String(err);
  return addresses.reduce((s, re) => s.replace(re, "<address>"), text);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
