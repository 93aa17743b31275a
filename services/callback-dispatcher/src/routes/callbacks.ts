import type { IncomingMessage, ServerResponse } from "node:http";
import { bodyCutOff, hostRefusal, type Logger, type RecordRequest, requestIdOf } from "@opsplane/platform";
import { refusalOf, transferCodingRefusal } from "../callback-refusal.js";
import { answerError, callerAbandoned, type DispatchDeps, dispatch, refuseLoop } from "../dispatch.js";
import { viaNames } from "../via.js";

/**
 * Paths the dispatcher keeps for itself (fastify serves them, a 404 for one it has no route for); a
 * callback can never be routed there. `/_audit/` is the platform's (the audit trail's query).
 */
export const reservedPrefixes = ["/_dispatcher/", "/ops.v1.", "/_audit/"];
const ownPaths = new Set(["/healthz", "/readyz", "/metrics"]);

/** Whether fastify serves this request target: the dispatcher's API, Connect RPCs, the audit trail, health and metrics. */
export function isOwnPath(url: string): boolean {
  if (url.startsWith("/_dispatcher/") || url.startsWith("/ops.v1.") || url.startsWith("/_audit/")) return true;
  const q = url.indexOf("?");
  return ownPaths.has(q < 0 ? url : url.slice(0, q));
}

/** A callback's path as its log lines show it: without the query (it may carry credentials), cut short. */
const loggedPath = (url: string) => url.split("?")[0]!.slice(0, 200);

/** The route label callbacks carry in the RED metrics (`http_requests_total{route="/*"}`). */
export const callbackRoute = "/*";

/**
 * Every request outside the dispatcher's own API is a third-party callback,
 * served on the raw HTTP server before fastify's router (its per-request hooks
 * cost about as much CPU as forwarding). The body is left unparsed (its exact
 * bytes are forwarded, so the platform's signature still verifies); callbacks
 * are public because third parties carry no platform credentials. Each is
 * counted in the RED metrics under the route `/*`, and its decision recorded.
 */
export function callbackFront(deps: DispatchDeps, o: { log: Logger; recordRequest: RecordRequest }) {
  const inFlight = new InFlight();
  const serveCallback = (req: IncomingMessage, res: ServerResponse): boolean => {
    const url = req.url ?? "/";
    if (isOwnPath(url)) return false;
    const started = performance.now();
    const { requestId, hosts, via, transferEncoding } = scanHeaders(req);
    const method = req.method ?? "GET";
    const hostRefused = hostRefusal(hosts, req.httpVersion);
    const badRequest = hostRefused ?? refusalOf(url);
    const refusal = badRequest ?? transferCodingRefusal(transferEncoding);
    if (refusal) {
      const [status, error] = badRequest ? [400, "bad_request"] : [501, "not_implemented"];
      req.resume();
      // As the kit's routes do: what follows on the connection was framed by a client that does not speak HTTP/1.1.
      if (hostRefused) res.shouldKeepAlive = false;
      answerError(res, status, requestId, error, refusal);
      o.recordRequest(method, callbackRoute, status, (performance.now() - started) / 1000);
      // No decision is recorded for it (no rule was looked at): this line is what an operator finds by its id.
      o.log.info({ requestId, method, path: loggedPath(url), status }, `callback refused before routing: ${refusal}`);
      return true;
    }
    if (via !== undefined && viaNames(via, deps.viaPseudonym)) {
      const status = refuseLoop(deps, req, res, requestId, started);
      o.recordRequest(method, callbackRoute, status, (performance.now() - started) / 1000);
      return true;
    }
    inFlight.count++;
    void serve(deps, o, req, res, requestId, method, started, inFlight);
    return true;
  };
  return {
    serve: serveCallback,
    /** Waits, at most `ms`, for the callbacks being dispatched to be answered and their decisions added; resolves with how many are left. */
    settled: (ms: number) => inFlight.settled(ms),
  };
}

/** How many callbacks are being dispatched, and who waits for there to be none (shutdown). */
class InFlight {
  count = 0;
  private idle: (() => void) | undefined;

  done(): void {
    if (--this.count === 0) this.idle?.();
  }

  async settled(ms: number): Promise<number> {
    if (this.count === 0) return 0;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.idle = resolve;
      timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    return this.count;
  }
}

/** Dispatches one callback and counts it; a failure of the dispatcher itself is logged and answered 500. */
async function serve(
  deps: DispatchDeps,
  o: { log: Logger; recordRequest: RecordRequest },
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  method: string,
  started: number,
  inFlight: InFlight,
): Promise<void> {
  let status: number;
  try {
    status = await dispatch(deps, req, res, requestId);
  } catch (err) {
    const cutOff = bodyCutOff(req, res);
    if (cutOff) {
      // Its caller left, or was timed out (the platform answered 408 and logged it, with this id), before
      // sending it whole: nothing was routed, nothing failed here. Not an error, and not a 5xx that anyone
      // can raise at will.
      if (cutOff === callerAbandoned)
        o.log.info(
          { reqId: requestId, method, path: loggedPath(req.url ?? "/"), err: (err as Error).message },
          "callback not received whole: its caller closed the connection; not routed",
        );
      status = cutOff;
    } else {
      o.log.error({ err, reqId: requestId, url: req.url }, "callback failed");
      if (!res.headersSent) answerError(res, 500, requestId, "internal", "internal error; see the service log for this request id");
      else res.destroy();
      status = 500;
    }
  } finally {
    inFlight.done();
  }
  o.recordRequest(method, callbackRoute, status, (performance.now() - started) / 1000);
}

/**
 * One pass over the raw header list: the request id (the caller's first `X-Request-Id` when the kit's
 * `requestIdFrom` accepts it: at most 128 characters of `A-Za-z0-9._:+=/-`, else a new UUID, as on
 * the platform's own routes; kept with the request, so a 408 for its body carries it too), how many
 * `Host` headers came, and the `Via` and `Transfer-Encoding` entries (each joined). `req.headers` would
 * build an object of every header for each callback.
 */
function scanHeaders(req: IncomingMessage): {
  requestId: string;
  hosts: number;
  via: string | undefined;
  transferEncoding: string | undefined;
} {
  const raw = req.rawHeaders;
  let given: string | undefined;
  let hosts = 0;
  let via: string | undefined;
  let transferEncoding: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === "host") hosts++;
    else if (name.length === 3 && name.toLowerCase() === "via") via = via === undefined ? raw[i + 1] : `${via}, ${raw[i + 1]}`;
    else if (given === undefined && name.length === 12 && name.toLowerCase() === "x-request-id") given = raw[i + 1];
    else if (name.length === 17 && name.toLowerCase() === "transfer-encoding")
      transferEncoding = transferEncoding === undefined ? raw[i + 1] : `${transferEncoding}, ${raw[i + 1]}`;
  }
  return { requestId: requestIdOf(req, given), hosts, via, transferEncoding };
}
