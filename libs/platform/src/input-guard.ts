import type { App } from "./app.js";
import { AppError } from "./errors.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /** The route takes NUL in its input: it never stores it, or stores it made storable itself (e.g. as the text `\u0000`). */
    allowNul?: boolean;
  }
}

/**
 * Why `value` cannot be taken as input, naming where in it, e.g. `body/registrations/3/id must not
 * contain NUL (\u0000)`; undefined when it can. PostgreSQL refuses NUL in `text` and `jsonb` (keys
 * included), and a non-finite number (JSON and query strings can spell `1e309`) is nobody's value.
 * Walks without recursion, so a deeply nested body cannot overflow the stack.
 */
export function unacceptableInput(value: unknown, at: string, allowNul = false): string | undefined {
  const pending: Array<[unknown, string]> = [[value, at]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [v, path] = next;
    if (typeof v === "string") {
      if (!allowNul && v.includes("\u0000")) return `${path || "value"} must not contain NUL (\\u0000)`;
    } else if (typeof v === "number") {
      if (!Number.isFinite(v)) return `${path || "value"} must be a finite number`;
    } else if (v !== null && typeof v === "object" && !ArrayBuffer.isView(v)) {
      for (const [k, x] of Object.entries(v)) {
        if (!allowNul && k.includes("\u0000")) return `${path || "value"} has a key containing NUL (\\u0000)`;
        pending.push([x, path ? `${path}/${k}` : k]);
      }
    }
  }
  return undefined;
}

/**
 * Refuses, with a 400 naming the field, REST input no route could store: NUL anywhere in params,
 * query or body (unless the route says `allowNul`), numbers that are not finite. It runs after schema
 * validation (so ajv's coercion of `1e309` to Infinity is caught) and before every handler. Connect
 * RPCs are checked on their decoded message by the RPC interceptor instead.
 */
export function installInputGuard(app: App, isRpcRoute: (url: string | undefined) => boolean): void {
  app.addHook("preHandler", async (req) => {
    if (isRpcRoute(req.routeOptions.url)) return;
    const allowNul = req.routeOptions.config?.allowNul === true;
    const reason =
      unacceptableInput(req.params, "params", allowNul) ??
      unacceptableInput(req.query, "querystring", allowNul) ??
      unacceptableInput(req.body, "body", allowNul);
    if (reason) throw new AppError(400, "invalid_request", reason);
  });
}
