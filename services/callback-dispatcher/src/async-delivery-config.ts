import { validateHeaderName, validateHeaderValue } from "node:http";
import { hopByHopHeaders } from "@opsplane/callback-agent/hop-by-hop";
import { badRequest } from "@opsplane/platform";
import { type Static, Type } from "@sinclair/typebox";
import { XMLValidator } from "fast-xml-parser";

const AnswerBody = Type.Object(
  {
    /** What the third party is answered; 2xx only (checked with a reason in {@link checkAsyncDelivery}). Default 200. */
    status: Type.Optional(Type.Integer({ minimum: 100, maximum: 599 })),
    headers: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 1024 }), { maxProperties: 32 })),
    /** Sent as UTF-8. */
    body: Type.Optional(Type.String({ maxLength: 65_536 })),
  },
  { additionalProperties: false },
);

/** `type/subtype`, lower case, no parameters: the key of `answerByContentType`. */
const mediaTypePattern = "^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$";

/**
 * An environment's asynchronous delivery as operators write it. `{}` turns it off. Present with an
 * `answer`, callbacks routed to the environment are answered from the template at once and
 * delivered in the background, with retries, until delivered or dead-lettered.
 */
export const AsyncDeliveryBody = Type.Object(
  {
    /** The answer for every callback whose content type has none of its own in `answerByContentType`. */
    answer: Type.Optional(AnswerBody),
    /** Answers by the callback's media type (`application/xml`, `application/x-www-form-urlencoded`, …). */
    answerByContentType: Type.Optional(
      // propertyNames, not a key pattern: fastify's Ajv would silently drop keys that miss the pattern.
      Type.Record(Type.String(), AnswerBody, { maxProperties: 16, propertyNames: { pattern: mediaTypePattern } }),
    ),
    /** Attempts before the delivery is dead-lettered (default 12). */
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    /** Age (from the callback's arrival) after which no attempt is made and the delivery is dead-lettered (default 86400: a day). */
    maxAgeSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 30 * 86_400 })),
    /** Wait before the second attempt; doubled each time, with jitter (default 1000). */
    initialBackoffMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 3_600_000 })),
    /** Longest wait between two attempts (default 600000: ten minutes). */
    maxBackoffMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 86_400_000 })),
    /**
     * Most deliveries pending (neither delivered nor dead) before its callbacks are forwarded
     * synchronously instead of queued (default 10000).
     */
    maxPending: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    /** Required on the production environment: answering for production hides its failures from the third party. */
    allowOnProduction: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type AsyncDeliveryBody = Static<typeof AsyncDeliveryBody>;

export interface AnswerTemplate {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** What is stored on the environment (`environments.async_delivery`): every default filled in. */
export interface AsyncDelivery {
  answer: AnswerTemplate;
  answerByContentType: Record<string, AnswerTemplate>;
  maxAttempts: number;
  maxAgeSeconds: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Absent from configurations saved before the field existed: {@link defaultMaxPending} applies to them. */
  maxPending?: number;
  allowOnProduction: boolean;
}

/** The retry policy without templates: what a re-driven dead letter gets when its environment is not asynchronous. */
export const defaultRetryPolicy = { maxAttempts: 12, maxAgeSeconds: 86_400, initialBackoffMs: 1_000, maxBackoffMs: 600_000 };

/**
 * Deliveries an environment may owe by default: hours of a busy test environment's callbacks while it
 * is down, and what PostgreSQL holds for it stays bounded (each is its callback's bytes, usually a
 * few KB, kept twice: to deliver and to replay).
 */
export const defaultMaxPending = 10_000;

/** Headers the dispatcher writes itself on a template answer. */
const setByDispatcher = new Set(["content-length", "x-request-id"]);

const isJson = (mediaType: string) => mediaType === "application/json" || mediaType.endsWith("+json");
const isXml = (mediaType: string) => mediaType === "application/xml" || mediaType === "text/xml" || mediaType.endsWith("+xml");

/** Why a form body is malformed: a `%` not followed by two hex digits (the receiver's parser would refuse or garble it). */
const badPercent = /%(?![0-9A-Fa-f]{2})/;

/** The media type of a Content-Type value, lower case, without parameters. */
export function mediaTypeOf(contentType: string | undefined): string {
  if (!contentType) return "";
  const semi = contentType.indexOf(";");
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/** One template checked: a 2xx status, headers HTTP can carry, a body its own content type can parse. */
function checkAnswer(field: string, a: AsyncDeliveryBody["answer"] & object): AnswerTemplate {
  const fail = (sub: string, why: string) => badRequest(`${field}${sub}: ${why}`, { field: `${field}${sub}` });
  const status = a.status ?? 200;
  if (status < 200 || status > 299)
    throw fail(
      ".status",
      `must be 2xx (got ${status}): a third party reads any other status as a failure and sends the callback again, while the dispatcher delivers it too`,
    );
  const body = a.body ?? "";
  if ((status === 204 || status === 205) && body) throw fail(".body", `a ${status} answer carries no body`);
  const headers: Record<string, string> = {};
  const seen = new Set<string>();
  for (const [name, value] of Object.entries(a.headers ?? {})) {
    const lower = name.toLowerCase();
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch (err) {
      throw fail(`.headers.${name}`, `not a valid HTTP header (${(err as Error).message})`);
    }
    if (seen.has(lower)) throw fail(`.headers.${name}`, "given twice (header names are case-insensitive)");
    seen.add(lower);
    if (hopByHopHeaders.has(lower) || setByDispatcher.has(lower))
      throw fail(`.headers.${name}`, "set by the dispatcher for each answer (hop-by-hop, length or request id); leave it out");
    headers[lower] = value;
  }
  if (body && headers["content-type"] === undefined) headers["content-type"] = "text/plain; charset=utf-8";
  const contentType = headers["content-type"] ?? "";
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)?.[1]?.toLowerCase();
  const ascii = Buffer.byteLength(body) === body.length;
  if (charset && charset !== "utf-8" && charset !== "utf8" && !(charset === "us-ascii" && ascii))
    throw fail(".headers.content-type", `charset ${charset}: the body is sent as UTF-8; say charset=utf-8`);
  const mediaType = mediaTypeOf(contentType);
  if (body && isJson(mediaType)) {
    try {
      JSON.parse(body);
    } catch (err) {
      throw fail(".body", `not valid JSON, as its content-type ${mediaType} says (${(err as Error).message})`);
    }
  }
  if (body && isXml(mediaType)) {
    const valid = XMLValidator.validate(body);
    if (valid !== true)
      throw fail(".body", `not well-formed XML, as its content-type ${mediaType} says (${valid.err.msg}, line ${valid.err.line})`);
  }
  if (mediaType === "application/x-www-form-urlencoded" && badPercent.test(body))
    throw fail(".body", "not form-encoded: a % must be followed by two hex digits");
  return { status, headers, body };
}

/**
 * The stored form of an environment's `asyncDelivery` (defaults filled in), undefined for `{}`
 * (synchronous), or a 400 naming the field: the templates must be answers a third party can read
 * (see {@link checkAnswer}), the backoff bounds in order, and production only when allowed.
 */
export function checkAsyncDelivery(input: AsyncDeliveryBody, production: boolean): AsyncDelivery | undefined {
  if (Object.keys(input).length === 0) return undefined;
  if (!input.answer)
    throw badRequest(
      "asyncDelivery.answer is required: it is what third parties are answered (e.g. {status: 200, body: 'success'}); send asyncDelivery {} to turn asynchronous delivery off",
      { field: "asyncDelivery.answer" },
    );
  const answer = checkAnswer("asyncDelivery.answer", input.answer);
  const answerByContentType: Record<string, AnswerTemplate> = {};
  for (const [mediaType, a] of Object.entries(input.answerByContentType ?? {}))
    answerByContentType[mediaType] = checkAnswer(`asyncDelivery.answerByContentType.${mediaType}`, a);
  const policy = {
    maxAttempts: input.maxAttempts ?? defaultRetryPolicy.maxAttempts,
    maxAgeSeconds: input.maxAgeSeconds ?? defaultRetryPolicy.maxAgeSeconds,
    initialBackoffMs: input.initialBackoffMs ?? defaultRetryPolicy.initialBackoffMs,
    maxBackoffMs: input.maxBackoffMs ?? Math.max(defaultRetryPolicy.maxBackoffMs, input.initialBackoffMs ?? 0),
  };
  if (policy.maxBackoffMs < policy.initialBackoffMs)
    throw badRequest(`asyncDelivery.maxBackoffMs (${policy.maxBackoffMs}) is below initialBackoffMs (${policy.initialBackoffMs})`, {
      field: "asyncDelivery.maxBackoffMs",
    });
  const allowOnProduction = input.allowOnProduction ?? false;
  if (production && !allowOnProduction) throw productionRefusal();
  return { answer, answerByContentType, ...policy, maxPending: input.maxPending ?? defaultMaxPending, allowOnProduction };
}

/** Why production is not answered from a template unless its configuration says so in as many words. */
export const productionRefusal = () =>
  badRequest(
    "asyncDelivery on the production environment answers third parties before production has seen the callback: a production failure " +
      "(down, a refused signature, a business error) is then hidden from them and they never retry; the dispatcher's retries and dead letters " +
      'replace theirs. Set "allowOnProduction": true to accept that for this environment',
    { field: "asyncDelivery.allowOnProduction" },
  );

/** A template ready to write: status, a flat header list, the body bytes. */
export interface CompiledAnswer {
  status: number;
  headers: string[];
  body: Buffer;
}

const compiled = new WeakMap<AsyncDelivery, { fallback: CompiledAnswer; byMediaType: Map<string, CompiledAnswer> }>();

function compile(t: AnswerTemplate): CompiledAnswer {
  const body = Buffer.from(t.body);
  const headers: string[] = [];
  for (const [name, value] of Object.entries(t.headers)) headers.push(name, value);
  headers.push("content-length", String(body.length));
  return { status: t.status, headers, body };
}

/**
 * The answer for a callback of `contentType`: its media type's own template, else `answer`. Compiled
 * once per stored configuration (each rule-set reload brings new objects).
 */
export function answerFor(config: AsyncDelivery, contentType: string | undefined): CompiledAnswer {
  let c = compiled.get(config);
  if (!c) {
    c = {
      fallback: compile(config.answer),
      byMediaType: new Map(Object.entries(config.answerByContentType).map(([k, t]) => [k, compile(t)])),
    };
    compiled.set(config, c);
  }
  return c.byMediaType.get(mediaTypeOf(contentType)) ?? c.fallback;
}
