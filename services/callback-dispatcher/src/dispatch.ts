import type { IncomingMessage, ServerResponse } from "node:http";
import { flatHeaders, type HttpExchange } from "@opsplane/callback-agent/rules";
import type { DecisionLog } from "./decision-log.js";
import { type Forwarder, outboundHeaders, UpstreamError } from "./forwarder.js";
import type { callbackCounter, DispatcherMetrics } from "./metrics.js";
import { headThenRest, readBounded } from "./read-bounded.js";
import type { Registry } from "./registry.js";
import { decide } from "./router.js";
import type { RuleSetCache } from "./rule-set.js";

export interface DispatchDeps {
  rules: RuleSetCache;
  registry: Registry;
  forwarder: Forwarder;
  decisions: DecisionLog;
  metrics: DispatcherMetrics;
  countCallback: ReturnType<typeof callbackCounter>;
  extractLimitBytes: number;
}

/** Splits a request target into path and raw query. */
export function splitTarget(url: string): { path: string; query: string } {
  const q = url.indexOf("?");
  return q < 0 ? { path: url, query: "" } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

/** Writes one of the dispatcher's own JSON error answers. */
export function answerError(res: ServerResponse, status: number, requestId: string, error: string, message: string): void {
  const body = Buffer.from(JSON.stringify({ error, message }));
  res.writeHead(status, [
    "content-type",
    "application/json; charset=utf-8",
    "content-length",
    String(body.length),
    "x-request-id",
    requestId,
  ]);
  res.end(body);
}

/**
 * The callback as extractors see it. Headers are flattened only when an extractor asks for them
 * (header and script extractors). A class, not an object literal with a getter: a per-object getter
 * gives every callback its own hidden class, an old-generation object that keeps the callback's
 * request alive through every young-generation collection until the next full one, and those
 * collections then took over a millisecond each.
 */
class CallbackExchange implements HttpExchange {
  private flat: Record<string, string> | undefined;

  constructor(
    readonly method: string,
    readonly path: string,
    readonly query: string,
    readonly body: Buffer,
    private readonly raw: IncomingMessage,
  ) {}

  get headers(): Record<string, string> {
    this.flat ??= flatHeaders(this.raw.headers);
    return this.flat;
  }
}

const errorNames: Record<number, string> = { 502: "bad_gateway", 503: "unavailable", 504: "upstream_timeout" };

/**
 * One callback, start to end: read the body (bounded), decide, forward the
 * exact bytes and write the upstream's answer back, record the decision.
 * Upstream failures become 502/504 so the platform retries; nothing here
 * drops a callback silently. Resolves with the status the caller got.
 */
export async function dispatch(deps: DispatchDeps, raw: IncomingMessage, res: ServerResponse, requestId: string): Promise<number> {
  const started = performance.now();
  const url = raw.url ?? "/";
  const { path, query } = splitTarget(url);
  const method = raw.method ?? "GET";
  const { head, complete } = await readBounded(raw, deps.extractLimitBytes);
  const exchange = new CallbackExchange(method, path, query, head, raw);
  const decision = await decide(exchange, complete, deps.rules.current(), deps.registry, (f) =>
    deps.metrics.extractionFailures.inc({ rule: f.rule, reason: f.reason }),
  );

  const finish = (status: number, error?: string) => {
    deps.countCallback(decision.rule ?? "", decision.target?.name ?? "", decision.reason, status);
    deps.decisions.add({
      at: Date.now(),
      requestId,
      method,
      path,
      rule: decision.rule,
      objectId: decision.objectId,
      targetEnv: decision.target?.name,
      reason: decision.reason,
      detail: decision.detail,
      status,
      latencyMs: performance.now() - started,
      error,
    });
    return status;
  };

  if (!decision.target) {
    if (!complete) raw.resume();
    const message = decision.detail ?? "no production environment configured";
    answerError(res, 503, requestId, errorNames[503]!, message);
    return finish(503, decision.detail);
  }
  try {
    const forwarded = await deps.forwarder.forward(
      decision.target,
      {
        method,
        pathAndQuery: url,
        headers: outboundHeaders(raw, requestId),
        body: complete ? head : headThenRest(head, raw),
      },
      res,
      requestId,
    );
    return finish(forwarded.status, forwarded.error);
  } catch (err) {
    const status = err instanceof UpstreamError ? err.status : 502;
    const message = (err as Error).message;
    if (!complete) raw.resume();
    if (!res.headersSent) answerError(res, status, requestId, errorNames[status]!, message);
    return finish(status, message);
  }
}
