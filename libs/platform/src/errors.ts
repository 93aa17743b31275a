import { Code, ConnectError } from "@connectrpc/connect";
import type { FastifyError } from "fastify";
import type { App } from "./app.js";

/** A failure the caller can act on: it becomes `status` and `{error, message, details}`. */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export const badRequest = (message: string, details?: unknown) => new AppError(400, "bad_request", message, details);
export const unauthorized = (message = "credentials required") => new AppError(401, "unauthorized", message);
export const forbidden = (message: string) => new AppError(403, "forbidden", message);
export const notFound = (message: string) => new AppError(404, "not_found", message);
export const conflict = (message: string, details?: unknown) => new AppError(409, "conflict", message, details);
export const payloadTooLarge = (limit: number) => new AppError(413, "payload_too_large", `request body exceeds ${limit} bytes`);
export const unavailable = (message: string) => new AppError(503, "unavailable", message);

export interface ErrorBody {
  error: string;
  message: string;
  details?: unknown;
}

const connectCodeByStatus: Record<number, Code> = {
  400: Code.InvalidArgument,
  401: Code.Unauthenticated,
  403: Code.PermissionDenied,
  404: Code.NotFound,
  409: Code.AlreadyExists,
  412: Code.FailedPrecondition,
  413: Code.ResourceExhausted,
  429: Code.ResourceExhausted,
  503: Code.Unavailable,
  504: Code.DeadlineExceeded,
};

/** The same error for a Connect RPC caller. */
export function toConnectError(err: AppError): ConnectError {
  return new ConnectError(err.message, connectCodeByStatus[err.status] ?? Code.Internal);
}

/** Maps every error fastify sees to the one JSON error model; unknown errors become 500 without internals. */
export function installErrorModel(app: App, bodyLimit: number): void {
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ error: "not_found", message: `no route ${req.method} ${req.url.split("?")[0]}` } satisfies ErrorBody);
  });
  app.setErrorHandler((err: FastifyError | AppError, req, reply) => {
    const body = describe(err, bodyLimit);
    if (body.status >= 500) req.log.error({ err }, "request failed");
    else req.log.info({ status: body.status, error: body.json.error }, body.json.message);
    reply.code(body.status).send(body.json);
  });
}

function describe(err: FastifyError | AppError, bodyLimit: number): { status: number; json: ErrorBody } {
  if (err instanceof AppError) {
    return {
      status: err.status,
      json: { error: err.code, message: err.message, ...(err.details === undefined ? {} : { details: err.details }) },
    };
  }
  if (err.validation) {
    return { status: 400, json: { error: "invalid_request", message: err.message, details: err.validation } };
  }
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return { status: 413, json: { error: "payload_too_large", message: `request body exceeds ${bodyLimit} bytes` } };
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return { status: 415, json: { error: "unsupported_media_type", message: err.message } };
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return { status: 400, json: { error: "invalid_json", message: err.message } };
  }
  if (err instanceof SyntaxError)
    return { status: 400, json: { error: "invalid_json", message: `body is not valid JSON: ${err.message}` } };
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) return { status, json: { error: "bad_request", message: err.message } };
  return { status: 500, json: { error: "internal", message: "internal error; see the service log for this request id" } };
}
