import type { IncomingMessage } from "node:http";
import type { App } from "./app.js";
import { AppError } from "./errors.js";

/** How many Host header lines a request carries (Node's `headers.host` keeps only the first). */
function hostLines(req: IncomingMessage): number {
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2)
    if (req.rawHeaders[i]!.length === 4 && req.rawHeaders[i]!.toLowerCase() === "host") hosts++;
  return hosts;
}

/**
 * Why a request cannot be taken for its Host header (RFC 9112 §3.2): more than one (which would the
 * upstream believe?), or none on HTTP/1.1. Node refuses a missing one itself with a bare 400 (no body,
 * no request id) unless its server is told not to (`requireHostHeader: false`, as the kit's is): the
 * refusal is then the kit's own.
 */
export function hostRefusal(hosts: number, httpVersion: string): string | undefined {
  if (hosts > 1) return "request has more than one Host header";
  return hosts === 0 && httpVersion === "1.1" ? "an HTTP/1.1 request must carry a Host header" : undefined;
}

/**
 * Refuses, in the error model with its request id, a request on a service's routes that `hostRefusal`
 * refuses, and closes its connection: what follows on it was framed by a client that does not speak HTTP/1.1.
 */
export function installHostRequirement(app: App): void {
  app.addHook("onRequest", async (req, reply) => {
    const reason = hostRefusal(hostLines(req.raw), req.raw.httpVersion);
    if (!reason) return;
    reply.header("connection", "close");
    throw new AppError(400, "bad_request", reason);
  });
}
