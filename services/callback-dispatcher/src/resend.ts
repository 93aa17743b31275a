import type { LookupFunction } from "node:net";
import { Agent, type Dispatcher } from "undici";
import { protocolSwitchAnswered, upstreamErrorText } from "./forwarder.js";

/** How an environment answered a kept callback sent again (a replay, an asynchronous delivery). */
export interface Resent {
  /** The environment's status; 502 when it could not be reached, 504 when it did not answer in time. */
  status: number;
  latencyMs: number;
  error: string | null;
  response: { headers: Record<string, string>; body: string; truncated: boolean } | null;
}

/** Answer bytes kept for the operator; the rest is read and dropped. */
const responseShown = 64 * 1024;

const timeoutCodes = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "UND_ERR_CONNECT_TIMEOUT"]);

/**
 * Sends kept callbacks to an environment, off the callback path: the bytes as they were kept, to
 * the environment's base URL plus the request target. Hosts are resolved with the URL policy's
 * lookup at each connection, as forwarding does. Never throws for the environment's failures:
 * they are the outcome.
 */
export function createResender(o: { timeoutMs: number; lookup: LookupFunction }) {
  const agent = new Agent({
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
    connectTimeout: Math.min(o.timeoutMs, 5_000),
    connect: { lookup: o.lookup },
  });

  return {
    /** `signal` ends an attempt that takes too long overall (answered 504). */
    async send(
      baseUrl: string,
      method: string,
      target: string,
      headers: string[],
      body: Buffer | null,
      signal?: AbortSignal,
    ): Promise<Resent> {
      const base = new URL(baseUrl);
      const started = performance.now();
      const switched = new AbortController();
      try {
        const res = await agent.request({
          origin: base.origin,
          path: `${base.pathname.replace(/\/+$/, "")}${target}`,
          method: method as Dispatcher.HttpMethod,
          headers,
          body: body ?? undefined,
          signal: signal ? AbortSignal.any([signal, switched.signal]) : switched.signal,
          onInfo: ({ statusCode }) => {
            if (statusCode === 101) switched.abort(new Error(protocolSwitchAnswered));
          },
        });
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          if (size < responseShown) chunks.push(chunk);
          size += chunk.length;
        }
        const shown = Buffer.concat(chunks).subarray(0, responseShown);
        const flat: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(", ") : v;
        return {
          status: res.statusCode,
          latencyMs: performance.now() - started,
          error: null,
          response: { headers: flat, body: shown.toString("utf8"), truncated: size > responseShown },
        };
      } catch (err) {
        const e = err as Error & { code?: string };
        const timedOut = timeoutCodes.has(e.code ?? "") || signal?.aborted === true;
        const reason: unknown = signal?.aborted ? signal.reason : switched.signal.aborted ? switched.signal.reason : undefined;
        const message = reason === undefined ? upstreamErrorText(e) : reason instanceof Error ? reason.message : String(reason);
        return { status: timedOut ? 504 : 502, latencyMs: performance.now() - started, error: message, response: null };
      }
    },
    close: () => agent.close(),
  };
}

export type Resender = ReturnType<typeof createResender>;
