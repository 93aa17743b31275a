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
 * Deeper than this a JSON value is refused: Connect's JSON reads stop at 100 levels (a value stored
 * deeper over REST could not be read back over Connect), and writing one costs a stack frame a level.
 */
const maxInputDepth = 64;

/** A deep path shortened to where it starts (`body/value/0/…`): the refusal must stay readable. */
const startOf = (path: string) => {
  const parts = path.split("/");
  return parts.length > 3 ? `${parts.slice(0, 3).join("/")}/…` : path || "value";
};

/** Whether an object key would reach an object's prototype when merged by code that trusts it. */
const prototypeKey = (k: string, v: unknown) =>
  k === "__proto__" || (k === "constructor" && v !== null && typeof v === "object" && Object.hasOwn(v, "prototype"));

/**
 * Why `value` cannot be taken as input, naming where in it, e.g. `body/registrations/3/id must not
 * contain NUL (\u0000)`; undefined when it can. PostgreSQL refuses NUL and lone surrogates in `text`
 * and `jsonb` (keys included), a non-finite number (JSON and query strings can spell `1e309`) is
 * nobody's value, nesting past {@link maxInputDepth} could not be read back, and a `__proto__` key or a
 * `constructor.prototype` would reach the prototype of objects in whatever merges the value later (an
 * SDK merging configuration, a script). Walks without recursion, so a deeply nested body cannot
 * overflow the stack.
 */
export function unacceptableInput(
  value: unknown,
  at: string,
  { allowUnstorable = false, maxDepth = maxInputDepth }: { allowUnstorable?: boolean; maxDepth?: number } = {},
): string | undefined {
  const pending: Array<[unknown, string, number]> = [[value, at, 0]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [v, path, depth] = next;
    if (typeof v === "string") {
      const unstorable = allowUnstorable ? undefined : unstorableText(v);
      if (unstorable) return `${path || "value"} must not contain ${unstorable}`;
    } else if (typeof v === "number") {
      if (!Number.isFinite(v)) return `${path || "value"} must be a finite number`;
    } else if (v !== null && typeof v === "object" && !ArrayBuffer.isView(v)) {
      if (depth >= maxDepth) return `${startOf(path)} nests deeper than ${maxDepth} levels`;
      for (const [k, x] of Object.entries(v)) {
        if (prototypeKey(k, x))
          return `${path || "value"} has a key ${k === "__proto__" ? "__proto__" : "constructor with a prototype"}, which is refused (it would alter objects' prototypes)`;
        const unstorable = allowUnstorable ? undefined : unstorableText(k);
        if (unstorable) return `${path || "value"} has a key containing ${unstorable}`;
        pending.push([x, path ? `${path}/${k}` : k, depth + 1]);
      }
    }
  }
  return undefined;
}

/**
 * Refuses, with a 400 naming the field, REST input no route could store: NUL or a lone surrogate anywhere in params,
 * query or body (unless the route says `allowUnstorable`), numbers that are not finite, nesting past
 * {@link maxInputDepth}. It runs after schema
 * validation (so ajv's coercion of `1e309` to Infinity is caught) and before every handler. Connect
 * RPCs are checked on their decoded message by the RPC interceptor instead.
 */
export function installInputGuard(app: App, isRpcRoute: (url: string | undefined) => boolean): void {
  app.addHook("preHandler", async (req) => {
    if (isRpcRoute(req.routeOptions.url)) return;
    const allowUnstorable = req.routeOptions.config?.allowUnstorable === true;
    const reason =
      unacceptableInput(req.params, "params", { allowUnstorable }) ??
      unacceptableInput(req.query, "querystring", { allowUnstorable }) ??
      unacceptableInput(req.body, "body", { allowUnstorable });
    if (reason) throw new AppError(400, "invalid_request", reason);
  });
}

/**
 * A REST route takes the query parameters it declares and no others: one it does not declare is
 * refused (400 `unknown field "expectrevision"`) like an unknown body field, never ignored (a
 * misspelt `?expectRevision=` made an optimistic-locked write unguarded). Sockets read their handshake's
 * query themselves, and Connect routes carry the protocol's own; both are left as they are.
 * Installed before any route: it completes each route as it is added.
 */
export function refuseUndeclaredQueries(app: App, isRpcRoute: (url: string | undefined) => boolean): void {
  app.addHook("onRoute", (route) => {
    // `websocket` is @fastify/websocket's route option.
    if ((route as { websocket?: boolean }).websocket || isRpcRoute(route.url)) return;
    const declared = route.schema?.querystring as { additionalProperties?: unknown } | undefined;
    // A declared query string is closed too, unless it says otherwise: TypeBox leaves objects open by default.
    if (declared && declared.additionalProperties !== undefined) return;
    const querystring = declared
      ? { ...declared, additionalProperties: false }
      : { type: "object", properties: {}, additionalProperties: false };
    route.schema = { ...route.schema, querystring };
  });
}
