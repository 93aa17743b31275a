import type { IncomingMessage, ServerResponse } from "node:http";
import type { LookupFunction } from "node:net";
import type { Readable } from "node:stream";
import { hopByHopHeaders } from "@opsplane/callback-agent/hop-by-hop";
import { type Dispatcher, errors, Pool } from "undici";
import type { Environment } from "./config-store.js";
import { defaultViaPseudonym } from "./via.js";

export interface OutboundCallback {
  method: string;
  /** Path and query exactly as received. */
  pathAndQuery: string;
  /** End-to-end request headers as a flat `[name, value, …]` list (see {@link outboundHeaders}). */
  headers: string[];
  /** The exact bytes received: a buffer when read whole, else a stream of them. */
  body: Buffer | Readable | AsyncIterable<Buffer>;
}

/** How the upstream answered; the answer itself has already been written to the caller. */
export interface Forwarded {
  status: number;
  /** Set when the upstream failed after its status line had been passed on (the caller's response is cut short). */
  error?: string;
}

/** Answers up to 64 KiB are read whole and written back in one write; larger ones stream. */
const bufferedResponseMax = 64 * 1024;

/** The upstream did not answer in time (504) or could not be reached (502); nothing was written to the caller yet. */
export class UpstreamError extends Error {
  constructor(
    readonly status: 502 | 504,
    message: string,
  ) {
    super(message);
  }
}

/**
 * What a decision says of a caller that closed its connection before the environment answered, if it did:
 * gone (the answer cannot be delivered), or its sending side closed (a FIN: it may still read the answer,
 * as a client that half-closes does, or be gone; which, only the write's fate tells, after the decision).
 */
export function callerLeft(res: ServerResponse): string | undefined {
  if (res.destroyed) return "the caller closed its connection before the environment answered: the answer was not delivered";
  if (res.socket?.readableEnded)
    return "the caller closed its connection (at least its sending side) before the environment answered: the answer may not have reached it";
  return undefined;
}

/** Why an environment's 101 fails the callback: one without an Upgrade header failed on an assertion inside undici. */
export const protocolSwitchAnswered = "answered 101 Switching Protocols, though a callback asks for no protocol switch";

/** An upstream failure in words: undici says only "bad upgrade" of a 101 that came with an Upgrade header. */
export const upstreamErrorText = (err: Error) =>
  err instanceof errors.SocketError && err.message === "bad upgrade" ? protocolSwitchAnswered : err.message;

/** `UPSTREAM_TIMEOUT_MS` passed before the answer was in. */
class AnswerDeadlinePassed extends Error {}

const isTimeout = (err: unknown) =>
  err instanceof AnswerDeadlinePassed ||
  err instanceof errors.HeadersTimeoutError ||
  err instanceof errors.BodyTimeoutError ||
  err instanceof errors.ConnectTimeoutError;

/**
 * Header names the dispatcher sets itself on forwarded requests, so the caller's copies are dropped
 * (`X-Forwarded-For`, `Forwarded` and `Via` are kept as the chain so far, with this hop appended).
 */
const replacedOnRequest = new Set([
  "host",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-real-ip",
  "forwarded",
  "via",
  "x-request-id",
  // Set only on asynchronous deliveries and replays: a third party's copy would pass for one (receivers dedupe on the id).
  "x-delivery-id",
  "x-delivery-attempt",
  "x-replay-of",
]);

/**
 * Names listed in a `Connection` header: hop-by-hop too (RFC 9110 §7.6.1). Only names beyond the
 * always-hop-by-hop ones are returned, so the usual `keep-alive` allocates nothing.
 */
function connectionNamed(value: string | undefined): Set<string> | undefined {
  if (!value) return undefined;
  let names: Set<string> | undefined;
  for (const n of value.split(",")) {
    const name = n.trim().toLowerCase();
    if (!name || hopByHopHeaders.has(name)) continue;
    names ??= new Set();
    names.add(name);
  }
  return names;
}

/** A node of RFC 7239's `for=`: IPv6 addresses bracketed and quoted. */
const forwardedNode = (ip: string) => (ip.includes(":") ? `"[${ip}]"` : ip);
const quoted = (value: string) => `"${value.replace(/["\\]/g, "\\$&")}"`;

/**
 * The end-to-end headers of a callback, from its raw header list (names keep their case, repeated
 * headers stay repeated), plus what this hop says about the caller, whatever the caller claimed:
 * `X-Forwarded-For` and `Forwarded` (the caller's chain, then this hop's peer address, `Host` and
 * scheme), `X-Forwarded-Host` (the `Host` received), `X-Forwarded-Proto` (the scheme received),
 * `X-Real-IP` (the peer address), `Via` (the caller's entries, then this hop's `<version> <pseudonym>`,
 * by which a callback coming back is known: see via.ts) and `X-Request-Id`.
 */
export function outboundHeaders(req: IncomingMessage, requestId: string, viaPseudonym = defaultViaPseudonym): string[] {
  const raw = req.rawHeaders;
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === "connection") connection = `${connection ?? ""},${raw[i + 1]}`;
  const named = connectionNamed(connection);
  const out: string[] = [];
  let host: string | undefined;
  let forwardedHost: string | undefined;
  let forwardedFor: string | undefined;
  let forwarded: string | undefined;
  let via: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (replacedOnRequest.has(name)) {
      if (name === "host") host = value;
      else if (name === "x-forwarded-host") forwardedHost = value;
      else if (name === "x-forwarded-for") forwardedFor = forwardedFor ? `${forwardedFor}, ${value}` : value;
      else if (name === "forwarded") forwarded = forwarded ? `${forwarded}, ${value}` : value;
      else if (name === "via") via = via ? `${via}, ${value}` : value;
      continue;
    }
    if (hopByHopHeaders.has(name) || named?.has(name)) continue;
    out.push(raw[i]!, value);
  }
  const clientIp = req.socket.remoteAddress;
  const proto = (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
  const xff = forwardedFor && clientIp ? `${forwardedFor}, ${clientIp}` : (forwardedFor ?? clientIp);
  if (xff) out.push("x-forwarded-for", xff);
  const xfh = host ?? forwardedHost;
  if (xfh !== undefined) out.push("x-forwarded-host", xfh);
  out.push("x-forwarded-proto", proto);
  if (clientIp) out.push("x-real-ip", clientIp);
  const hop = `${clientIp ? `for=${forwardedNode(clientIp)};` : ""}${host === undefined ? "" : `host=${quoted(host)};`}proto=${proto}`;
  out.push("forwarded", forwarded ? `${forwarded}, ${hop}` : hop);
  const viaHop = `${req.httpVersion} ${viaPseudonym}`;
  out.push("via", via ? `${via}, ${viaHop}` : viaHop);
  out.push("x-request-id", requestId);
  return out;
}

/** The upstream's end-to-end response headers as `[name, value, …]`, without its `X-Request-Id` (the caller gets ours). */
function responseHeaders(raw: Buffer[]): { list: string[]; hasLength: boolean } {
  const names: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString("latin1").toLowerCase();
    names.push(name);
    if (name === "connection") connection = `${connection ?? ""},${raw[i + 1]!.toString("latin1")}`;
  }
  const named = connectionNamed(connection);
  const list: string[] = [];
  let hasLength = false;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    if (hopByHopHeaders.has(name) || named?.has(name) || name === "x-request-id") continue;
    if (name === "content-length") hasLength = true;
    list.push(name, raw[2 * i + 1]!.toString("latin1"));
  }
  return { list, hasLength };
}

/**
 * One forwarded callback as an undici dispatch handler: no response stream objects for the usual
 * small answer (collected, then one `writeHead` + `end`), direct piping with backpressure for large ones.
 */
class ForwardHandler implements Dispatcher.DispatchHandler {
  private status = 0;
  private headers: string[] = [];
  private hasLength = false;
  private chunks: Buffer[] = [];
  private size = 0;
  private streaming = false;
  private abort: ((err?: Error) => void) | undefined;
  private settled = false;
  private deadline: NodeJS.Timeout | undefined;
  /** Set when the deadline passed while the request still waited for a connection: it is never sent. */
  private expired: Error | undefined;

  // Plain fields rather than per-callback closures: one object per forwarded callback.
  constructor(
    private readonly res: ServerResponse,
    private readonly method: string,
    private readonly requestId: string,
    private readonly env: Environment,
    private readonly origin: string,
    private readonly started: number,
    private readonly onResponseHeaders: ((env: Environment, seconds: number) => void) | undefined,
    private readonly resolve: (f: Forwarded) => void,
    private readonly reject: (err: UpstreamError) => void,
    /** The forwarder's requests not settled yet, which shutdown stops. */
    private readonly inFlight: Set<ForwardHandler>,
  ) {}

  /**
   * The answer is due within `ms` of the dispatch, waiting for one of the pool's connections included.
   * undici's own header and body timeouts fire up to half a second late (a coarse shared clock) and start
   * only once a connection takes the request, so a callback queued behind a hung environment waited for
   * several of them in turn; they stay as the backstop between chunks of a streamed answer.
   */
  startDeadline(ms: number): void {
    this.inFlight.add(this);
    this.deadline = setTimeout(() => {
      if (this.settled || this.streaming) return;
      this.stop(
        new AnswerDeadlinePassed(
          `no answer within ${ms} ms (UPSTREAM_TIMEOUT_MS)${this.abort ? "" : "; it was still waiting for one of the environment's UPSTREAM_CONNECTIONS"}`,
        ),
      );
    }, ms);
  }

  /** Ends the request with `err`: aborted if it was sent, else never sent. */
  stop(err: Error): void {
    if (this.settled) return;
    if (this.abort) this.abort(err);
    else {
      this.expired = err;
      this.onError(err);
    }
  }

  /** Whether the request has a connection: being sent, or sent; the environment may have it. */
  get underWay(): boolean {
    return this.abort !== undefined;
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    if (this.expired) abort(this.expired);
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    if (status === 101) {
      this.stop(new Error(protocolSwitchAnswered));
      return false;
    }
    if (status < 200) return true; // interim answers (100 Continue) are the connection's business
    this.status = status;
    const { list, hasLength } = responseHeaders(raw);
    list.push("x-request-id", this.requestId);
    this.headers = list;
    this.hasLength = hasLength;
    this.resumeUpstream = resume;
    this.onResponseHeaders?.(this.env, (performance.now() - this.started) / 1000);
    return true;
  }

  private resumeUpstream: () => void = () => {};

  onData(chunk: Buffer): boolean {
    if (this.streaming) return this.write(chunk);
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size <= bufferedResponseMax) return true;
    // Large answer: pass on what we have and stream the rest as it comes (the status is out: no 504 any more).
    this.streaming = true;
    clearTimeout(this.deadline);
    this.res.writeHead(this.status, this.headers);
    this.res.once("close", () => {
      if (!this.res.writableFinished) this.abort?.(new Error("caller went away"));
    });
    let ok = true;
    for (const c of this.chunks) ok = this.write(c);
    this.chunks = [];
    return ok;
  }

  private write(chunk: Buffer): boolean {
    if (this.res.write(chunk)) return true;
    this.res.once("drain", this.resumeUpstream);
    return false;
  }

  onComplete(): void {
    // Whether its caller was still there for the answer (the third party retries if not).
    const left = callerLeft(this.res);
    if (this.streaming) {
      this.res.end();
    } else {
      const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
      const bodiless = this.method === "HEAD" || this.status === 204 || this.status === 304;
      if (!this.hasLength && !bodiless) this.headers.push("content-length", String(body.length));
      this.res.writeHead(this.status, this.headers);
      this.res.end(body);
    }
    this.settle();
    this.resolve({ status: this.status, error: left });
  }

  onError(err: Error): void {
    // Already answered 504 by the deadline: this is undici dropping the request it then reached.
    if (this.settled) return;
    this.settle();
    const message = `${this.env.name} (${this.origin}): ${upstreamErrorText(err)}`;
    if (!this.streaming) {
      this.reject(new UpstreamError(isTimeout(err) ? 504 : 502, message));
      return;
    }
    this.res.destroy(err);
    this.resolve({ status: this.status, error: message });
  }

  private settle(): void {
    this.settled = true;
    clearTimeout(this.deadline);
    this.inFlight.delete(this);
  }
}

/**
 * Sends callbacks to environments over keep-alive pools, one per origin, and
 * writes each answer back to the caller. Only configured environments are
 * ever targets, so this is no open proxy.
 */
export function createForwarder(o: {
  timeoutMs: number;
  connections: number;
  /** Resolves environment hosts at each connection, refusing addresses they may not point to (see environment-url-policy.ts). */
  lookup?: LookupFunction;
  onResponseHeaders?(env: Environment, seconds: number): void;
}) {
  const pools = new Map<string, Pool>();
  const inFlight = new Set<ForwardHandler>();
  let stopped: string | undefined;
  // Parsed once per base URL, not per callback.
  const targets = new Map<string, { pool: Pool; origin: string; prefix: string }>();
  const targetOf = (baseUrl: string) => {
    let t = targets.get(baseUrl);
    if (!t) {
      const url = new URL(baseUrl);
      let pool = pools.get(url.origin);
      if (!pool) {
        pool = new Pool(url.origin, {
          connections: o.connections,
          keepAliveTimeout: 30_000,
          headersTimeout: o.timeoutMs,
          bodyTimeout: o.timeoutMs,
          connectTimeout: Math.min(o.timeoutMs, 5_000),
          ...(o.lookup ? { connect: { lookup: o.lookup } } : {}),
        });
        pools.set(url.origin, pool);
      }
      t = { pool, origin: url.origin, prefix: url.pathname.replace(/\/+$/, "") };
      targets.set(baseUrl, t);
    }
    return t;
  };

  return {
    /**
     * Forwards one callback and writes the upstream's answer to `res`. Rejects with an
     * UpstreamError (nothing written yet) when the upstream cannot be reached or does not answer in time.
     */
    forward(env: Environment, cb: OutboundCallback, res: ServerResponse, requestId: string): Promise<Forwarded> {
      const target = targetOf(env.baseUrl);
      const started = performance.now();
      return new Promise<Forwarded>((resolve, reject) => {
        const handler = new ForwardHandler(
          res,
          cb.method,
          requestId,
          env,
          target.origin,
          started,
          o.onResponseHeaders,
          resolve,
          reject,
          inFlight,
        );
        if (stopped !== undefined) {
          handler.stop(new Error(stopped));
          return;
        }
        handler.startDeadline(o.timeoutMs);
        target.pool.dispatch(
          {
            method: cb.method as Dispatcher.HttpMethod,
            path: target.prefix ? `${target.prefix}${cb.pathAndQuery}` : cb.pathAndQuery,
            headers: cb.headers,
            body: cb.body as Dispatcher.DispatchOptions["body"],
          },
          handler,
        );
      });
    },
    /**
     * At shutdown, once the callers still connected were cut off: stops every request still waiting for
     * its environment's answer, and fails the later ones unsent, with `reason` (UpstreamError 502). So
     * their decisions are recorded before the decision log's last flush, not after it, when nothing
     * writes them.
     */
    /** Whether shutdown has stopped it: what it is handed now fails unsent, with the reason. */
    get stopped(): boolean {
      return stopped !== undefined;
    },
    stop(reason: string): void {
      stopped = reason;
      for (const handler of [...inFlight])
        handler.stop(new Error(handler.underWay ? `${reason}; it was already on its way: the environment may have received it` : reason));
    },
    async close(): Promise<void> {
      await Promise.all([...pools.values()].map((p) => p.close()));
      pools.clear();
      targets.clear();
    },
  };
}

export type Forwarder = ReturnType<typeof createForwarder>;
