import type { IncomingMessage } from "node:http";
import type { App } from "./app.js";
import { AppError } from "./errors.js";

/**
 * Why a request cannot be taken for want of a Host header: HTTP/1.1 requires one (RFC 9112 §3.2).
 * Node refuses such a request itself with a bare 400 (no body, no request id) unless its server is
 * told not to (`requireHostHeader: false`, as the kit's is): the refusal is then the kit's own.
 */
export function missingHost(req: IncomingMessage): string | undefined {
  return req.httpVersion === "1.1" && req.headers.host === undefined ? "an HTTP/1.1 request must carry a Host header" : undefined;
}

/** Refuses, in the error model with its request id, a request on a service's routes that `missingHost` refuses. */
export function installHostRequirement(app: App): void {
  app.addHook("onRequest", async (req) => {
    const reason = missingHost(req.raw);
    if (reason) throw new AppError(400, "bad_request", reason);
  });
}
