import type { App } from "./app.js";
import { AppError } from "./errors.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /**
     * The route takes text PostgreSQL cannot store (NUL, lone surrogates) in its input: it never stores
     * it, or stores it made storable itself (NUL as the text `\u0000`, a lone surrogate as U+FFFD).
     */
    allowUnstorable?: boolean;
  }
}

// In `u` mode a surrogate pair is one character: only a surrogate without its partner is `\p{Cs}`.
const loneSurrogate = /\p{Cs}/u;

/** Why PostgreSQL cannot store this text as it is, or undefined. */
function unstorableText(s: string): string | undefined {
  if (s.includes("\u0000")) return "NUL (\\u0000)";
  // JSON can spell one (`"\ud800"`) but it is no character: jsonb refuses it, text would store U+FFFD.
  if (loneSurrogate.test(s)) return "a lone surrogate (not valid Unicode)";
  return undefined;
}

/**
 * Why `value` cannot be taken as input, naming where in it, e.g. `body/registrations/3/id must not
 * contain NUL (\u0000)`; undefined when it can. PostgreSQL refuses NUL and lone surrogates in `text`
 * and `jsonb` (keys included), and a non-finite number (JSON and query strings can spell `1e309`) is
 * nobody's value. Walks without recursion, so a deeply nested body cannot overflow the stack.
 */
export function unacceptableInput(value: unknown, at: string, allowUnstorable = false): string | undefined {
  const pending: Array<[unknown, string]> = [[value, at]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [v, path] = next;
    if (typeof v === "string") {
      const unstorable = allowUnstorable ? undefined : unstorableText(v);
      if (unstorable) return `${path || "value"} must not contain ${unstorable}`;
    } else if (typeof v === "number") {
      if (!Number.isFinite(v)) return `${path || "value"} must be a finite number`;
    } else if (v !== null && typeof v === "object" && !ArrayBuffer.isView(v)) {
      for (const [k, x] of Object.entries(v)) {
        const unstorable = allowUnstorable ? undefined : unstorableText(k);
        if (unstorable) return `${path || "value"} has a key containing ${unstorable}`;
        pending.push([x, path ? `${path}/${k}` : k]);
      }
    }
  }
  return undefined;
}

/**
 * Refuses, with a 400 naming the field, REST input no route could store: NUL or a lone surrogate anywhere in params,
 * query or body (unless the route says `allowUnstorable`), numbers that are not finite. It runs after schema
 * validation (so ajv's coercion of `1e309` to Infinity is caught) and before every handler. Connect
 * RPCs are checked on their decoded message by the RPC interceptor instead.
 */
export function installInputGuard(app: App, isRpcRoute: (url: string | undefined) => boolean): void {
  app.addHook("preHandler", async (req) => {
    if (isRpcRoute(req.routeOptions.url)) return;
    const allowUnstorable = req.routeOptions.config?.allowUnstorable === true;
    const reason =
      unacceptableInput(req.params, "params", allowUnstorable) ??
      unacceptableInput(req.query, "querystring", allowUnstorable) ??
      unacceptableInput(req.body, "body", allowUnstorable);
    if (reason) throw new AppError(400, "invalid_request", reason);
  });
}
