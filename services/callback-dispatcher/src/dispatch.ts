import type { IncomingMessage, ServerResponse } from "node:http";
import { decodeBody, ExtractionRefused, flatHeaders } from "@opsplane/callback-agent/rules";
import { bodyCutOff, outageRetryAfterSeconds } from "@opsplane/platform";
import type { AsyncIntake } from "./async-intake.js";
import type { DecisionLog } from "./decision-log.js";
import type { EncodedExchange } from "./extraction-body.js";
import { callerLeft, type Forwarder, outboundHeaders, UpstreamError } from "./forwarder.js";
import type { DispatcherMetrics } from "./metrics.js";
import { headThenRest, readBounded } from "./read-bounded.js";
import type { RegistrationHold } from "./registration-hold.js";
import type { Registry } from "./registry.js";
import { type Decision, decide } from "./router.js";
import type { RuleSetCache } from "./rule-set.js";
import { loopMessage } from "./via.js";

export interface DispatchDeps {
  rules: RuleSetCache;
  registry: Registry;
  /** Holds callbacks whose registration may still be in flight (rules with `holdMs`). */
  hold: RegistrationHold;
  forwarder: Forwarder;
  decisions: DecisionLog;
  /** Queues callbacks for environments in asynchronous mode and answers them from their template. */
  asyncIntake: AsyncIntake;
  metrics: DispatcherMetrics;
  extractLimitBytes: number;
  /** This dispatcher's name in `Via` (VIA_PSEUDONYM): added to what it forwards, a loop when a callback arrives with it. */
  viaPseudonym: string;
}

/** Splits a request target into path and raw query. */
export function splitTarget(url: string): { path: string; query: string } {
  const q = url.indexOf("?");
  return q < 0 ? { path: url, query: "" } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

/** `Retry-After` of the dispatcher's own 503s: the platform's, for a dependency out of reach. */
const retryAfter = String(outageRetryAfterSeconds);

/** Writes one of the dispatcher's own JSON error answers; a 503 carries `Retry-After`, as the platform's do. */
export function answerError(res: ServerResponse, status: number, requestId: string, error: string, message: string): void {
  const body = Buffer.from(JSON.stringify({ error, message }));
  const headers = ["content-type", "application/json; charset=utf-8", "content-length", String(body.length), "x-request-id", requestId];
  if (status === 503) headers.push("retry-after", retryAfter);
  res.writeHead(status, headers);
  res.end(body);
}

/**
 * The callback as extractors see it. Headers are flattened only when an extractor asks for them
 * (header and script extractors). A class, not an object literal with a getter: a per-object getter
 * gives every callback its own hidden class, an old-generation object that keeps the callback's
 * request alive through every young-generation collection until the next full one, and those
 * collections then took over a millisecond each.
 */
class CallbackExchange implements EncodedExchange {
  private flat: Record<string, string> | undefined;
  private decoded: Buffer | ExtractionRefused | undefined;

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

  bodyForExtraction(limit: number): Buffer {
    if (this.decoded === undefined) {
      // From the raw list: building `raw.headers` for every callback costs more than this scan.
      let contentType: string | undefined;
      let contentEncoding: string | undefined;
      const list = this.raw.rawHeaders;
      // Repeated lines are read as Node's `headers` (and so the agent) reads them: the first Content-Type,
      // every Content-Encoding joined. Taking the last of each, the two sides read different ids.
      for (let i = 0; i < list.length; i += 2) {
        const name = list[i]!;
        if (name.length === 12 && contentType === undefined && name.toLowerCase() === "content-type") contentType = list[i + 1];
        else if (name.length === 16 && name.toLowerCase() === "content-encoding")
          contentEncoding = contentEncoding === undefined ? list[i + 1] : `${contentEncoding}, ${list[i + 1]}`;
      }
      try {
        this.decoded = decodeBody(this.body, contentType, contentEncoding, limit);
      } catch (err) {
        if (!(err instanceof ExtractionRefused)) throw err;
        this.decoded = err;
      }
    }
    if (this.decoded instanceof ExtractionRefused) throw this.decoded;
    return this.decoded;
  }
}

/**
 * The status recorded (decision, `http_requests_total`) for a callback whose caller closed the connection, or was
 * timed out, before sending it whole: nginx's "client closed request". Not a 5xx: the dispatcher did not fail.
 */
export const callerAbandoned = 499;

const errorNames: Record<number, string> = { 502: "bad_gateway", 503: "unavailable", 504: "upstream_timeout" };

/** What a third party reads when the environment fails: that it may retry, and the id to quote; never where the callback went. */
const upstreamFailure = (status: number, requestId: string) =>
  `${status === 504 ? "the callback's receiver did not answer in time" : "the callback's receiver could not be reached"}; retry later (request id ${requestId})`;

/**
 * What a third party reads when no environment takes its callback (503): that it may retry. A script
 * the sandbox could not run, or a registry that could not answer, is described in the decision, not to
 * the caller (its reason may name the replica's internals).
 */
export const unroutedMessage = (decision: Decision, requestId: string) =>
  decision.reason === "script_unavailable" || decision.reason === "registry_unavailable"
    ? `the callback could not be routed yet; retry later (request id ${requestId})`
    : (decision.detail ?? "no production environment configured");

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
  const decision = await decide(exchange, complete, deps.rules.current(), deps.registry, deps.metrics.countExtractionFailure, deps.hold);

  const headers = outboundHeaders(raw, requestId, deps.viaPseudonym);
  let status: number;
  let error: string | undefined;
  // Its caller reset the connection while it was being routed (held for its registration, waiting for a lookup
  // or a script): sent now, the environment would get it, and again when the third party retries.
  // At shutdown it is the dispatcher that closed the connection: the stopped forwarder records why.
  const gone = res.destroyed && !deps.forwarder.stopped;
  // An asynchronous environment: answered from its template once queued; if it cannot be queued, forwarded as usual.
  const asyncDelivery = decision.target?.asyncDelivery;
  if (asyncDelivery && complete && !gone) {
    const intake = await deps.asyncIntake.accept(
      decision,
      asyncDelivery,
      { method, path, target: url, headers, body: head, requestId, started },
      res,
    );
    if (intake.answered) return intake.status;
    decision.detail = decision.detail ? `${decision.detail}; ${intake.why}` : intake.why;
  }
  if (gone) {
    if (!complete) raw.resume();
    status = callerAbandoned;
    error = "the caller closed its connection while its callback was being routed: not forwarded (its platform retries)";
  } else if (!decision.target) {
    if (!complete) raw.resume();
    answerError(res, 503, requestId, errorNames[503]!, unroutedMessage(decision, requestId));
    status = 503;
    error = decision.detail;
  } else {
    try {
      const forwarded = await deps.forwarder.forward(
        decision.target,
        {
          method,
          pathAndQuery: url,
          headers,
          body: complete ? head : headThenRest(head, raw),
        },
        res,
        requestId,
      );
      status = forwarded.status;
      error = forwarded.error;
    } catch (err) {
      status = err instanceof UpstreamError ? err.status : 502;
      error = (err as Error).message;
      if (!complete && bodyCutOff(raw, res)) {
        // Its body was being streamed to the environment when the caller's connection closed: the forward was
        // aborted because of the caller, not the environment (which may have stopped reading it too).
        status = callerAbandoned;
        error = `the caller's request ended before it was received whole (connection closed, or REQUEST_TIMEOUT_MS); the forward was aborted: ${error}`;
      } else if (!deps.forwarder.stopped) {
        // Not when shutdown stopped the forwarder: it closed the caller's connection itself.
        const left = callerLeft(res);
        if (left) error = `${error}; ${left}`;
      }
      if (!complete) raw.resume();
      // The caller is a third party: the environment's name, address and error stay in the decision.
      if (!res.headersSent) answerError(res, status, requestId, errorNames[status]!, upstreamFailure(status, requestId));
    }
  }
  deps.metrics.countCallback(decision.rule ?? "", decision.target?.name ?? "", decision.reason, status);
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
    // Kept (bounded) for showing and replaying it: the bytes and headers exactly as forwarded.
    payload: { target: url, headers, body: complete ? head : undefined },
  });
  return status;
}

/**
 * A callback that arrived with this dispatcher's own `Via` entry: it forwarded it already (an
 * environment's base URL leads back to it), and forwarding it again would loop until every upstream
 * connection is taken. Answered 508 and recorded (`forwarding_loop`), not forwarded; the hop that
 * sent it records the 508 as its environment's answer. Returns the status.
 */
export function refuseLoop(deps: DispatchDeps, raw: IncomingMessage, res: ServerResponse, requestId: string, started: number): number {
  raw.resume();
  const message = loopMessage(deps.viaPseudonym);
  answerError(res, 508, requestId, "loop_detected", message);
  deps.metrics.countCallback("", "", "forwarding_loop", 508);
  deps.decisions.add({
    at: Date.now(),
    requestId,
    method: raw.method ?? "GET",
    path: splitTarget(raw.url ?? "/").path,
    rule: undefined,
    objectId: undefined,
    targetEnv: undefined,
    reason: "forwarding_loop",
    detail: message,
    status: 508,
    latencyMs: performance.now() - started,
    error: undefined,
  });
  return 508;
}
