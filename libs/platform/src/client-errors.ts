import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { type Logger, redactCredentials } from "./logger.js";
import { requestIdFrom, requestIdOf } from "./request-id.js";

/** An error Node's HTTP server reports before any route sees the request (llhttp's, or its own timeouts). */
interface ClientError extends Error {
  code?: string;
  /** llhttp's reason, e.g. "Invalid header value char". */
  reason?: string;
}

/** Requests answered 408 while their body was still arriving: their route sees the body cut off. */
const timedOut = new WeakSet<IncomingMessage>();

/**
 * What became of a request whose body stopped arriving because its connection closed: timed out by the
 * server (408, answered and logged here), or its client went away (499, nginx's "client closed request").
 * Undefined for a request read whole, or one whose body the server stopped reading itself (over a
 * limit: its connection is still there for the refusal).
 */
export function bodyCutOff(req: IncomingMessage, res: ServerResponse): 408 | 499 | undefined {
  if (req.complete || !res.destroyed) return undefined;
  return timedOut.has(req) ? 408 : 499;
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

/** The answer Node is writing on a connection (pipelined answers after it wait their turn), if any. */
const answerInProgress = (socket: Socket) => (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;

/**
 * Waits until every request read in full before the refused one has been answered (pipelining), then
 * says whether the refusal may be written: not when an answer to the refused request itself (one whose
 * body never came in full) has already begun, since bytes of ours would corrupt it.
 */
function answersWritten(socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const next = () => {
      const res = answerInProgress(socket);
      if (!res || socket.destroyed) return resolve(true);
      if (!res.req.complete) return resolve(!res.headersSent);
      // Emitted once the answer is written (after Node has handed the connection to the next pipelined
      // answer) or abandoned.
      res.once("close", next);
    };
    next();
  });
}

/**
 * Writes a refusal on a connection whose request never reaches a route, once the requests read before
 * it (pipelined) have been answered: a callback already forwarded must not lose its answer (the third
 * party would send it again). The connection is closed after it: what follows cannot be trusted.
 */
function refuseAfterPendingAnswers(socket: Socket, status: number, statusText: string, requestId: string, error: string, message: string) {
  void answersWritten(socket).then((mayAnswer) => {
    if (mayAnswer && socket.writable) {
      const body = JSON.stringify({ error, message });
      socket.write(
        `HTTP/1.1 ${status} ${statusText}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
          `x-request-id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroySoon();
  });
}

/**
 * Answers a request Node's HTTP parser refused (a NUL or a raw control byte in a header, a target
 * with bytes no URL holds, a header section over the limit, a request not received in time) in the
 * platform's error model, with an `x-request-id` that the log line also carries, instead of fastify's
 * `{"error":"Bad Request","message":"Client Error"}` with no id: the caller can quote the id, and the
 * SRE find it.
 */
export function clientErrorAnswer(log: Logger) {
  // Node reports the refusal again for each later chunk on the connection: it is answered once.
  const refused = new WeakSet<Socket>();
  return (err: ClientError, socket: Socket): void => {
    // The peer went away: there is nobody to answer.
    if (err.code === "ECONNRESET" || socket.destroyed || refused.has(socket)) return;
    // It closed its side mid-request (a FIN before the headers or body ended): what it sent is no request, so
    // nothing to refuse or log (one info line per such connection was noise anyone could raise); the rest
    // of the connection, held open for half-closing clients, goes too.
    if (err.code === "HPE_INVALID_EOF_STATE") {
      log.debug({ code: err.code }, "connection closed by its client mid-request");
      socket.destroy();
      return;
    }
    refused.add(socket);
    const [status, statusText, error, message] = answerOf(err);
    // A request refused while its body was arriving (408) already has its id, which its route's records carry
    // (a callback's decision). A request Node could not read has none yet.
    const current = answerInProgress(socket);
    const arriving = current && !current.req.complete ? current.req : undefined;
    if (arriving && status === 408) timedOut.add(arriving);
    const requestId = arriving ? requestIdOf(arriving, arriving.headers["x-request-id"]) : randomUUID();
    log.info({ reqId: requestId, status, error, code: err.code }, message);
    refuseAfterPendingAnswers(socket, status, statusText, requestId, error, message);
  };
}

/** Why a CONNECT is answered 405 (a service's dry run of a request says the same). */
export const connectRefusal = "CONNECT is not served here: this is not a proxy";

/**
 * Answers a CONNECT (a tunnel: the platform is no proxy) 405 in the error model, with a request id
 * (the caller's when acceptable) that the log line carries too; without a listener Node would close
 * the connection without a word.
 */
export function connectAnswer(log: Logger) {
  return (req: IncomingMessage, socket: Socket): void => {
    const requestId = requestIdFrom(req.headers["x-request-id"]);
    const message = connectRefusal;
    log.info({ reqId: requestId, status: 405, error: "method_not_allowed", target: req.url }, message);
    refuseAfterPendingAnswers(socket, 405, "Method Not Allowed", requestId, "method_not_allowed", message);
  };
}

/** Why a request with an `Expect` other than `100-continue` is answered 417. */
const expectationRefusal = "the Expect header cannot be met: only 100-continue is supported";

/**
 * Answers a request whose `Expect` is not `100-continue` (the only expectation HTTP defines) 417 in the
 * error model, with a request id (the caller's when acceptable) that the log line carries too; Node's own
 * answer is a bare 417 with neither, written before any route, or a before-router handler, sees the request.
 * The connection is closed after it: a client waiting for an interim answer before sending its body
 * would otherwise have its next request read as that body.
 */
export function expectationAnswer(log: Logger) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const requestId = requestIdFrom(req.headers["x-request-id"]);
    const message = expectationRefusal;
    // The URL without the credentials its query may carry, as the request log has it.
    const url = redactCredentials(req.url ?? "/").slice(0, 1024);
    log.info({ reqId: requestId, status: 417, error: "expectation_failed", method: req.method, url }, message);
    const body = JSON.stringify({ error: "expectation_failed", message });
    res.shouldKeepAlive = false;
    res.writeHead(417, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      "x-request-id": requestId,
    });
    res.end(body);
  };
}
