import diagnostics from "node:diagnostics_channel";
import type { IncomingMessage, ServerResponse } from "node:http";
import { type CompiledRule, decodeBody, flatHeaders, type HttpExchange } from "./rules/index.js";

export interface InterceptorOptions {
  /** The rules in force right now (swapped whole when they change). */
  rules(): CompiledRule[];
  maxBodyBytes: number;
  onId(rule: string, id: string): void;
  onExtractionFailure(rule: string, err: Error): void;
  /** Anything unexpected inside the agent: logged, never thrown into the app. */
  onInternalError(err: Error): void;
}

interface RequestStart {
  request: IncomingMessage;
  response: ServerResponse;
}

/** Copies at most `limit` bytes of a stream's chunks, remembering whether more came. */
class BoundedCopy {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(private readonly limit: number) {}
  add(chunk: unknown, encoding?: unknown): void {
    if (chunk === null || chunk === undefined || typeof chunk === "function") return;
    if (this.truncated) return;
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : typeof chunk === "string"
        ? Buffer.from(chunk, typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8")
        : chunk instanceof Uint8Array
          ? Buffer.from(chunk)
          : undefined;
    if (!buf) return;
    if (this.size + buf.length > this.limit) {
      this.truncated = true;
      this.chunks = [];
      return;
    }
    this.chunks.push(Buffer.from(buf));
    this.size += buf.length;
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/**
 * Watches every request of every http server in this process through
 * diagnostics_channel. For requests matching a rule's interface-A pattern it
 * copies the request body as the HTTP parser pushes it (never reading the
 * stream, so the app sees exactly what it would have) and the response as the
 * app writes it. Ids in the request are read once its body is complete, ids
 * in the response once the response has finished (status < 400). Every step
 * is guarded: an agent failure is reported, never thrown into the app.
 */
export function installInterceptor(o: InterceptorOptions): () => void {
  const onStart = (message: unknown) => {
    try {
      observe(message as RequestStart, o);
    } catch (err) {
      o.onInternalError(err as Error);
    }
  };
  diagnostics.subscribe("http.server.request.start", onStart);
  return () => diagnostics.unsubscribe("http.server.request.start", onStart);
}

function observe({ request: req, response: res }: RequestStart, o: InterceptorOptions): void {
  const rules = o.rules();
  if (!rules.length) return;
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  const path = pathOf(q < 0 ? url : url.slice(0, q));
  const method = req.method ?? "GET";
  const matched = rules.filter((r) => r.matchesInterface(method, req.headers.host, path));
  if (!matched.length) return;
  const fromRequest = matched.filter((r) => !r.interfaceIdFromResponse);
  const fromResponse = matched.filter((r) => r.interfaceIdFromResponse);
  const reqBody = new BoundedCopy(o.maxBodyBytes);

  // Bodies are read as the dispatcher reads its callbacks: compressed ones inflated (to at most
  // maxBodyBytes), other charsets (GBK forms) in UTF-8, or the two sides would not read the same id.
  const decoded = (headers: Record<string, string>, body: Buffer) =>
    decodeBody(body, headers["content-type"], headers["content-encoding"], o.maxBodyBytes);
  const exchange = (response?: HttpExchange["response"]): HttpExchange => {
    const headers = flatHeaders(req.headers);
    return {
      method,
      path,
      query: q < 0 ? "" : url.slice(q + 1),
      headers,
      // A response rule reads the response alone: the request is left as it came.
      body: response ? reqBody.bytes() : decoded(headers, reqBody.bytes()),
      ...(response ? { response: { ...response, body: decoded(response.headers, response.body) } } : {}),
    };
  };
  const extract = (which: CompiledRule[], x: () => HttpExchange, truncated: boolean | undefined) => {
    let read: HttpExchange;
    try {
      if (truncated) throw new Error(`body larger than ${o.maxBodyBytes} bytes`);
      read = x();
    } catch (err) {
      for (const rule of which) o.onExtractionFailure(rule.name, err as Error);
      return;
    }
    for (const rule of which) {
      try {
        Promise.resolve(rule.interfaceId(read)).then(
          (id) => o.onId(rule.name, id),
          (err: Error) => o.onExtractionFailure(rule.name, err),
        );
      } catch (err) {
        o.onExtractionFailure(rule.name, err as Error);
      }
    }
  };

  // Ids in A's request are read the moment its body is complete (the parser pushes the end), before
  // the app has answered: the third party may call back before A's response leaves, and the sooner
  // the dispatcher knows the id, the fewer callbacks arrive ahead of their registration.
  let requestRead = !fromRequest.length;
  const readRequest = () => {
    if (requestRead) return;
    requestRead = true;
    try {
      extract(fromRequest, () => exchange(), reqBody.truncated);
    } catch (err) {
      o.onInternalError(err as Error);
    }
  };
  const push = req.push;
  req.push = function (this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding) {
    const more = push.call(this, chunk, encoding);
    try {
      if (chunk === null) readRequest();
      else reqBody.add(chunk);
    } catch (err) {
      o.onInternalError(err as Error);
    }
    return more;
  } as typeof req.push;
  if (req.complete) readRequest();

  if (!fromResponse.length) return;
  const resBody = copyResponse(res, o);
  res.once("finish", () => {
    try {
      if (res.statusCode >= 400) return;
      const response = { status: res.statusCode, headers: resBody.headers(), body: resBody.bytes() };
      extract(fromResponse, () => exchange(response), resBody.truncated);
    } catch (err) {
      o.onInternalError(err as Error);
    }
  });
}

/**
 * The response as the app writes it: its body (bounded) and its headers, those set with setHeader and
 * those handed to writeHead, which getHeaders() does not list (a `content-encoding: gzip` given there
 * is what says the body must be inflated to be read).
 */
function copyResponse(
  res: ServerResponse,
  o: InterceptorOptions,
): { bytes(): Buffer; truncated: boolean; headers(): Record<string, string> } {
  const copy = new BoundedCopy(o.maxBodyBytes);
  let given: Record<string, string> = {};
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    try {
      given = headersGiven(typeof args[1] === "string" ? args[2] : args[1]);
    } catch (err) {
      o.onInternalError(err as Error);
    }
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as typeof res.writeHead;
  const write = res.write;
  const end = res.end;
  res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    try {
      copy.add(chunk, rest[0]);
    } catch (err) {
      o.onInternalError(err as Error);
    }
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof res.write;
  res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    try {
      copy.add(chunk, rest[0]);
    } catch (err) {
      o.onInternalError(err as Error);
    }
    return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
  } as typeof res.end;
  return {
    bytes: () => copy.bytes(),
    get truncated() {
      return copy.truncated;
    },
    headers: () => ({ ...flatHeaders(res.getHeaders()), ...given }),
  };
}

/** writeHead's headers argument, in any of its forms (an object, `[name, value]` pairs, or a flat list), as lower-case names. */
function headersGiven(headers: unknown): Record<string, string> {
  if (!headers || typeof headers !== "object") return {};
  if (!Array.isArray(headers)) return flatHeaders(headers as Record<string, string | string[] | number | undefined>);
  const pairs: unknown[][] = Array.isArray(headers[0]) ? (headers as unknown[][]) : [];
  if (!pairs.length) for (let i = 0; i + 1 < headers.length; i += 2) pairs.push([headers[i], headers[i + 1]]);
  const out: Record<string, string> = {};
  for (const [name, value] of pairs) {
    const key = String(name).toLowerCase();
    out[key] = out[key] === undefined ? String(value) : `${out[key]}, ${String(value)}`;
  }
  return out;
}

/** Request targets may be absolute (`http://host/path`) in proxy-style requests. */
function pathOf(target: string): string {
  if (target.startsWith("/")) return target;
  try {
    return new URL(target).pathname;
  } catch {
    return target;
  }
}
