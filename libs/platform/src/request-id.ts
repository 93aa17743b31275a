import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { App } from "./app.js";

/** What a caller's id may be: a plain token (UUIDs, hex, trace ids) short enough for every log line and header. */
const acceptable = /^[A-Za-z0-9._:+=/-]{1,128}$/;

/**
 * The caller's `X-Request-Id` when it is a plain token of at most 128 characters, else a new UUID.
 * The id is echoed in headers and written to logs and the audit trail, so a caller cannot put
 * arbitrary text there.
 */
export function requestIdFrom(given: string | string[] | undefined): string {
  return typeof given === "string" && acceptable.test(given) ? given : randomUUID();
}

/** Where a request keeps the id it was given (a property: a WeakMap costs each scavenge an ephemeron per request). */
const kRequestId = Symbol("opsplane.requestId");

/**
 * The request's id (see `requestIdFrom`; `header` is its `X-Request-Id`), the same each time it is asked:
 * the 408 for a body that came too slowly, written outside the route, carries the id its route's log
 * lines and records carry, caller-given or not.
 */
export function requestIdOf(req: IncomingMessage, header: string | string[] | undefined): string {
  const held = req as IncomingMessage & { [kRequestId]?: string };
  held[kRequestId] ??= requestIdFrom(header);
  return held[kRequestId];
}

/**
 * Every answer carries `x-request-id`: set when the request arrives, so errors, 404s and Connect
 * RPCs (which connect-fastify answers past fastify's onSend, copying the reply's headers) carry it too.
 */
export function installRequestIdHeader(app: App): void {
  app.addHook("onRequest", async (req, reply) => {
    reply.header("x-request-id", req.id);
  });
}
