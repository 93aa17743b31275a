import type { App } from "./app.js";

/** A readiness check: resolves when the dependency is usable, throws (with a reason) when not. */
export type Check = () => Promise<void>;

const CHECK_TIMEOUT_MS = 2_000;

/**
 * `/healthz` says the process is alive (always 200 while it serves), so Kubernetes
 * restarts only a wedged process. `/readyz` says whether to send traffic: every
 * check must pass, and a failure is named, e.g. `{"status":"unavailable",
 * "failing":["postgres"],"checks":{"postgres":"connect ECONNREFUSED …"}}`.
 */
export function installHealth(app: App, checks: Map<string, Check>, isShuttingDown: () => boolean): void {
  app.get("/healthz", { config: { access: "public" }, logLevel: "warn" }, async () => ({ status: "ok" }));
  app.get("/readyz", { config: { access: "public" }, logLevel: "warn" }, async (_req, reply) => {
    const results: Record<string, string> = {};
    await Promise.all(
      [...checks].map(async ([name, check]) => {
        try {
          await withTimeout(check(), CHECK_TIMEOUT_MS);
          results[name] = "ok";
        } catch (err) {
          results[name] = (err as Error).message || String(err);
        }
      }),
    );
    if (isShuttingDown()) results.shutdown = "shutting down";
    const failing = Object.keys(results).filter((k) => results[k] !== "ok");
    reply.code(failing.length ? 503 : 200);
    return failing.length ? { status: "unavailable", failing, checks: results } : { status: "ready", checks: results };
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
