import { ExtractionRefused, type HttpExchange } from "@opsplane/callback-agent/rules";

/** A callback whose body may be compressed (`Content-Encoding`) or in another charset than UTF-8 (`Content-Type`). */
export interface EncodedExchange extends HttpExchange {
  /** The body as extractors read it: decoded to at most `limit` bytes of UTF-8 (cached per callback). Throws ExtractionRefused. */
  bodyForExtraction(limit: number): Buffer;
}

const isEncoded = (x: HttpExchange): x is EncodedExchange => typeof (x as Partial<EncodedExchange>).bodyForExtraction === "function";

/** The exchange with its body replaced by the decoded one; only ever built for a compressed or non-UTF-8 callback. */
class DecodedExchange implements HttpExchange {
  constructor(
    private readonly inner: HttpExchange,
    readonly body: Buffer,
  ) {}
  get method() {
    return this.inner.method;
  }
  get path() {
    return this.inner.path;
  }
  get query() {
    return this.inner.query;
  }
  get headers() {
    return this.inner.headers;
  }
}

/**
 * What an extractor that reads the body sees: the body if it is within `limit` bytes, decoded
 * (gzip / deflate, then the declared charset to UTF-8) when the callback says it is encoded.
 * `decodeBound` caps the decoding itself, so a small compressed body cannot inflate into a large
 * one (a zip bomb stops there). Throws ExtractionRefused.
 */
export function exchangeForExtraction(x: HttpExchange, limit: number, decodeBound: number): HttpExchange {
  if (x.body.length > limit) throw overLimit(x.body.length, limit, "");
  if (!isEncoded(x)) return x;
  const body = x.bodyForExtraction(decodeBound);
  if (body === x.body) return x;
  if (body.length > limit) throw overLimit(body.length, limit, "decoded ");
  return new DecodedExchange(x, body);
}

const overLimit = (size: number, limit: number, decoded: string) =>
  new ExtractionRefused("body_too_large", `${decoded}body is ${size} bytes, over the rule's extraction limit of ${limit} bytes; not read`);
