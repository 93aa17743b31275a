import type { IncomingMessage, ServerResponse } from "node:http";
import { type Logger, type RecordRequest, requestIdFrom } from "@opsplane/platform";
import { answerError, type DispatchDeps, dispatch } from "../dispatch.js";

/** Paths the dispatcher keeps for itself (fastify serves them); a callback can never be routed there. */
export const reservedPrefixes = ["/_dispatcher/", "/ops.v1."];
const ownPaths = new Set(["/healthz", "/readyz", "/metrics"]);

/** Whether fastify serves this request target: the dispatcher's API, Connect RPCs, health and metrics. */
export function isOwnPath(url: string): boolean {
  if (url.startsWith("/_dispatcher/") || url.startsWith("/ops.v1.")) return true;
  const q = url.indexOf("?");
  return ownPaths.has(q < 0 ? url : url.slice(0, q));
}

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
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    const url = req.url ?? "/";
    if (isOwnPath(url)) return false;
    const started = performance.now();
    const requestId = requestIdOf(req);
    const method = req.method ?? "GET";
    const done = (status: number) => o.recordRequest(method, callbackRoute, status, (performance.now() - started) / 1000);
    // Absolute-form targets (`POST http://elsewhere/…`) are proxy requests, never platform callbacks.
    if (!url.startsWith("/")) {
      req.resume();
      answerError(res, 400, requestId, "bad_request", "request target must be a path (origin-form)");
      done(400);
      return true;
    }
    dispatch(deps, req, res, requestId).then(done, (err: Error) => {
      o.log.error({ err, reqId: requestId, url }, "callback failed");
      if (!res.headersSent) answerError(res, 500, requestId, "internal", "internal error; see the service log for this request id");
      else res.destroy();
      done(500);
    });
    return true;
  };
}

/** The caller's `X-Request-Id` when it is acceptable, else a new one (as the platform does for its own routes). */
function requestIdOf(req: IncomingMessage): string {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 12 && name.toLowerCase() === "x-request-id") return requestIdFrom(raw[i + 1]);
  }
  return requestIdFrom(undefined);
}
