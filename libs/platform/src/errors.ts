import { Code, ConnectError } from "@connectrpc/connect";
import { errorToJson } from "@connectrpc/connect/protocol-connect";
import type { FastifyError } from "fastify";
import type { App } from "./app.js";
import { bodyCutOff } from "./client-errors.js";
import { isDependencyOutage, refusedValueReason } from "./dependency-errors.js";
import type { RecordRequest } from "./metrics.js";

/**
 * A failure the caller can act on: it becomes `status` and `{error, message, details}` over REST,
 * the matching code over Connect, and a `Retry-After` header on both when `retryAfterSeconds` is set.
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    readonly retryAfterSeconds?: number,
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
/** A body of a type the route does not take: the caller is told what it sent and what to send. */
export const unsupportedMediaType = (contentType: string | undefined) =>
  new AppError(
    415,
    "unsupported_media_type",
    `${contentType ? `content-type ${JSON.stringify(contentType)}` : "a body without content-type"} is not accepted: send the body as JSON (content-type: application/json)`,
  );
export const unavailable = (message: string, retryAfterSeconds?: number) =>
  new AppError(503, "unavailable", message, undefined, retryAfterSeconds);

/** How long a caller is asked to wait after a dependency outage; readiness takes the pod out meanwhile. */
export const outageRetryAfterSeconds = 5;

/**
 * The AppError `err` stands for: itself, a dependency out of reach (503 with Retry-After), or a
 * value PostgreSQL refused (400, its reason). Undefined for anything else: a bug, answered 500.
 * REST routes and Connect RPCs both answer through this, so one failure reads the same on both.
 */
export function asAppError(err: unknown): AppError | undefined {
  if (err instanceof AppError) return err;
  if (isDependencyOutage(err))
    return unavailable("temporarily unavailable: a dependency did not answer; retry later", outageRetryAfterSeconds);
  const refused = refusedValueReason(err);
  if (refused !== undefined) return badRequest(`invalid input: ${refused}`);
  return undefined;
}

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
  415: Code.InvalidArgument,
  422: Code.InvalidArgument,
  429: Code.ResourceExhausted,
  502: Code.Unavailable,
  503: Code.Unavailable,
  504: Code.DeadlineExceeded,
};

/** The same error for a Connect RPC caller: its code by status, and Retry-After as a response header. */
export function toConnectError(err: AppError): ConnectError {
  const metadata = err.retryAfterSeconds === undefined ? undefined : { "retry-after": String(err.retryAfterSeconds) };
  return new ConnectError(err.message, connectCodeByStatus[err.status] ?? Code.Internal, metadata);
}

/** Longest name or path quoted whole in an error: a caller's 15,000-character one is not echoed back whole. */
const maxQuoted = 200;
const shortened = (text: string) => (text.length <= maxQuoted ? text : `${text.slice(0, maxQuoted)}… (${text.length} characters)`);

/** The router's reason for a URL it cannot read (`'<url>' is exceeding the max param length`), its URL shortened. */
export const urlRefusal = (message: string) => {
  const quoted = /^'(.*)' ([^']+)$/s.exec(message);
  return `the URL cannot be read: ${quoted ? `'${shortened(quoted[1]!)}' ${quoted[2]}` : shortened(message)}`;
};

/**
 * Maps every error fastify sees to the one JSON error model; unknown errors become 500 without
 * internals. On Connect routes (refusals before Connect reads the RPC: credentials, body size) the
 * body is a Connect error, `{code, message}`, so Connect clients read the reason too.
 */
export function installErrorModel(
  app: App,
  bodyLimit: number,
  isRpcRoute: (url: string | undefined) => boolean,
  recordRequest: RecordRequest,
): void {
  app.setNotFoundHandler((req, reply) => {
    // A path segment past the router's 4096 characters finds no route either: its path is not echoed back whole.
    reply
      .code(404)
      .send({ error: "not_found", message: `no route ${req.method} ${shortened(req.url.split("?")[0]!)}` } satisfies ErrorBody);
  });
  app.setErrorHandler((err: FastifyError | AppError, req, reply) => {
    // A body cut off by its client, or timed out by the server (answered 408 outside the route), is no
    // dependency outage (its ECONNRESET read as one: a 503 warning anyone could raise). Nobody is left to
    // answer, and fastify counts no request it could not answer: counted here.
    const cutOff = bodyCutOff(req.raw, reply.raw);
    if (cutOff) {
      if (cutOff === 499) req.log.info({ status: 499 }, "the client closed its connection before its request's body arrived in full");
      recordRequest(req.method, req.routeOptions.url ?? "unmatched", cutOff, reply.elapsedTime / 1000);
      return;
    }
    const e = describe(err, bodyLimit, req.headers["content-type"]);
    if (e.status === 500) req.log.error({ err }, "request failed");
    else if (e.status >= 500) req.log.warn({ err: (err as Error).message, status: e.status }, e.message);
    else req.log.info({ status: e.status, error: e.code }, e.message);
    if (e.retryAfterSeconds !== undefined) reply.header("retry-after", String(e.retryAfterSeconds));
    reply.code(e.status);
    if (isRpcRoute(req.routeOptions.url)) reply.send(errorToJson(toConnectError(e), undefined));
    else reply.send({ error: e.code, message: e.message, ...(e.details === undefined ? {} : { details: e.details }) } satisfies ErrorBody);
  });
}

function describe(err: FastifyError | AppError, bodyLimit: number, contentType: string | undefined): AppError {
  if (err instanceof AppError) return err;
  const known = asAppError(err);
  if (known) return known;
  if (err.validation) return unknownField(err) ?? notAllowedValue(err) ?? new AppError(400, "invalid_request", err.message, err.validation);
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return payloadTooLarge(bodyLimit);
    // Fastify says only "Unsupported Media Type".
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return unsupportedMediaType(contentType);
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new AppError(400, "invalid_json", err.message);
  }
  if (err instanceof SyntaxError) return new AppError(400, "invalid_json", `body is not valid JSON: ${err.message}`);
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) return new AppError(status, "bad_request", err.message);
  return new AppError(500, "internal", internalErrorMessage);
}

/** A JSON pointer (`/interface/id/kind`) as its segments. */
const fieldPath = (pointer: string) =>
  pointer
    .split("/")
    .slice(1)
    .map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));

/**
 * ajv's "must NOT have additional properties", made to name the field (`interface.id.form`). The
 * kit's validator refuses undeclared fields instead of dropping them (fastify's default), so a
 * misspelt field is a 400 the caller can read, not a setting silently ignored.
 */
function unknownField(err: FastifyError): AppError | undefined {
  const first = err.validation?.[0];
  if (first?.keyword !== "additionalProperties") return undefined;
  const extra = (first.params as { additionalProperty?: unknown }).additionalProperty;
  if (typeof extra !== "string") return undefined;
  const field = shortened([...fieldPath(first.instancePath), extra].join("."));
  return badRequest(`unknown field "${field}": not part of this request (a typo?)`, { field, in: err.validationContext });
}

/**
 * ajv's answer to a value outside a list (a union of constants: "must be equal to constant, … must
 * match a schema in anyOf", or an enum), made to name the field and list the values it takes.
 */
function notAllowedValue(err: FastifyError): AppError | undefined {
  const at = err.validation?.[0]?.instancePath;
  if (at === undefined) return undefined;
  const allowed: unknown[] = [];
  for (const e of err.validation!) {
    if (e.instancePath !== at) return undefined;
    const params = e.params as { allowedValue?: unknown; allowedValues?: unknown[] };
    if (e.keyword === "const") allowed.push(params.allowedValue);
    else if (e.keyword === "enum") allowed.push(...(params.allowedValues ?? []));
    else if (e.keyword !== "anyOf") return undefined;
  }
  if (!allowed.length) return undefined;
  return notAllowed(
    `${err.validationContext}${at} must be equal to one of the allowed values (${allowed.join(", ")})`,
    fieldPath(at).join("."),
    err.validationContext,
    allowed,
  );
}

/** A value outside a field's list: 400 `invalid_request` naming the field and listing the values it takes. */
export const notAllowed = (message: string, field: string, where: string | undefined, allowed: unknown[]) =>
  new AppError(400, "invalid_request", message, { field, in: where, allowed });

/** What a caller sees of a bug, over REST and Connect alike: the request id leads to the log line. */
export const internalErrorMessage = "internal error; see the service log for this request id";
