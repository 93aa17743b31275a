import { randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import type { Logger } from "./logger.js";

/** An error Node's HTTP server reports before any route sees the request (llhttp's, or its own timeouts). */
interface ClientError extends Error {
  code?: string;
  /** llhttp's reason, e.g. "Invalid header value char". */
  reason?: string;
}

/** Status, error code and message of the answer to a request Node could not read. */
function answerOf(err: ClientError): [number, string, string, string] {
  if (err.code === "HPE_HEADER_OVERFLOW")
    return [431, "Request Header Fields Too Large", "header_too_large", "the request's header section is over the server's limit (16 KiB)"];
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT")
    return [408, "Request Timeout", "request_timeout", "the request was not received in full within the server's request timeout"];
  const reason = err.reason ?? err.code ?? "malformed request";
  return [400, "Bad Request", "bad_request", `the request cannot be read as HTTP/1.1: ${reason}`];
}

/**
 * Answers a request Node's HTTP parser refused (a NUL or a raw control byte in a header, a target
 * with bytes no URL holds, a header section over the limit, a request not received in time) in the
 * platform's error model, with an `x-request-id` that the log line also carries, instead of fastify's
 * `{"error":"Bad Request","message":"Client Error"}` with no id: the caller can quote the id, and the
 * SRE find it. The connection is closed after the answer: what follows on it cannot be trusted.
 */
export function clientErrorAnswer(log: Logger) {
  return (err: ClientError, socket: Socket): void => {
    // The peer went away: there is nobody to answer.
    if (err.code === "ECONNRESET" || socket.destroyed) return;
    const [status, statusText, error, message] = answerOf(err);
    const requestId = randomUUID();
    log.info({ reqId: requestId, status, error, code: err.code }, message);
    if (socket.writable) {
      const body = JSON.stringify({ error, message });
      socket.write(
        `HTTP/1.1 ${status} ${statusText}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
          `x-request-id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  };
}
