import type { IncomingHttpHeaders } from "node:http";

/**
 * Hooks of a route whose body fields are all optional (`curl -X POST …/replay`, a `DELETE` with
 * `{expectRevision?, comment?}`): no body, or an empty one, means `{}` whatever Content-Type the
 * request names, not a 415 (a type nothing parses) nor a 400 "body must be object". A body that is
 * there is still parsed and validated. Spread into the route's options.
 */
export const optionalBody = {
  // Before parsing: with no Content-Type fastify parses nothing (as when a request has no body).
  onRequest(req: { headers: IncomingHttpHeaders }, _reply: unknown, done: () => void): void {
    const { "content-length": length, "transfer-encoding": chunked } = req.headers;
    if (chunked === undefined && (length === undefined || length === "0")) delete req.headers["content-type"];
    done();
  },
  preValidation(req: { body: unknown }, _reply: unknown, done: () => void): void {
    req.body ??= {};
    done();
  },
};
