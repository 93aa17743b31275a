/**
 * The SDK's network thread (see net-thread.ts): fetch, `ws` and ioredis run here, on messages from
 * the app's thread, and what they answer or hear goes back as messages. Nothing here may throw out
 * of a handler: a failure is an answer ("failed", a socket's "error" and "close").
 */
import { parentPort } from "node:worker_threads";
import { Redis } from "ioredis";
import WebSocket from "ws";
import type { FromNetThread, NetFailureInfo, SocketEvent, ToNetThread } from "./net-protocol.js";

const port = parentPort!;
const sockets = new Map<number, WebSocket>();
const clients = new Map<number, Redis>();

const post = (m: FromNetThread) => port.postMessage(m);
const socketEvent = (id: number, event: SocketEvent) => post({ t: "ws", id, event });

port.on("message", (m: ToNetThread) => {
  try {
    handle(m);
  } catch (err) {
    if (m.t === "http" || m.t === "redis-call") post({ t: "failed", id: m.id, failure: failureOf(err) });
    else if (m.t === "ws-open") {
      socketEvent(m.id, { type: "error", message: (err as Error).message });
      socketEvent(m.id, { type: "close", code: 1006, reason: "" });
    } else if (m.t === "redis-open") post({ t: "redis", id: m.id, event: { type: "error", message: (err as Error).message } });
  }
});

function handle(m: ToNetThread): void {
  switch (m.t) {
    case "http":
      fetch(m.url, { method: m.method, headers: m.headers, body: m.body, signal: AbortSignal.timeout(m.timeoutMs) })
        .then(async (res) =>
          post({ t: "http", id: m.id, status: res.status, retryAfter: res.headers.get("retry-after"), text: await res.text() }),
        )
        .catch((err: unknown) => post({ t: "failed", id: m.id, failure: failureOf(err) }));
      break;
    case "ws-open":
      openSocket(m.id, m.url, m.headers, m.handshakeTimeoutMs);
      break;
    case "ws-send":
      sockets.get(m.id)?.send(m.text);
      break;
    case "ws-close":
      sockets.get(m.id)?.close(m.code, m.reason);
      break;
    case "ws-terminate":
      sockets.get(m.id)?.terminate();
      break;
    case "redis-open":
      openClient(m.id, m.url, m.timeoutMs, m.retryStepMs, m.retryMaxMs);
      break;
    case "redis-call": {
      const client = clients.get(m.redis);
      if (!client) {
        post({ t: "failed", id: m.id, failure: { timedOut: false, reason: "the Redis client is closed" } });
        break;
      }
      const answer = m.command === "get" ? client.get(m.args[0]!) : client.mget(...m.args);
      answer.then(
        (value) => post({ t: "redis-reply", id: m.id, value }),
        (err: unknown) => post({ t: "failed", id: m.id, failure: failureOf(err) }),
      );
      break;
    }
    case "redis-close":
      clients.get(m.id)?.disconnect();
      clients.delete(m.id);
      break;
  }
}

function openSocket(id: number, url: string, headers: Record<string, string>, handshakeTimeout: number): void {
  const ws = new WebSocket(url, { headers, handshakeTimeout });
  sockets.set(id, ws);
  // A refused handshake: ws leaves the response to us; terminate() aborts it and emits the close.
  ws.on("unexpected-response", (_req, res) => {
    socketEvent(id, { type: "refused", status: res.statusCode ?? 0 });
    res.resume();
    ws.terminate();
  });
  ws.on("error", (err) => socketEvent(id, { type: "error", message: err.message }));
  ws.on("open", () => socketEvent(id, { type: "open" }));
  ws.on("message", (data, binary) => socketEvent(id, { type: "message", text: String(data), binary }));
  ws.on("close", (code, reason) => {
    sockets.delete(id);
    socketEvent(id, { type: "close", code, reason: String(reason) });
  });
}

function openClient(id: number, url: string, timeoutMs: number, retryStepMs: number, retryMaxMs: number): void {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    // A command while Redis is down fails at once (the read goes to config-center) instead of waiting
    // for a reconnection or the command timeout.
    enableOfflineQueue: false,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
    retryStrategy: (attempt) => Math.min(attempt * retryStepMs, retryMaxMs),
  });
  clients.set(id, client);
  client.on("error", (err: Error) => post({ t: "redis", id, event: { type: "error", message: err.message } }));
  client.on("ready", () => post({ t: "redis", id, event: { type: "ready" } }));
  client.connect().catch(() => {});
}

/** fetch's "fetch failed" hides the reason (ECONNREFUSED, ENOTFOUND…) in its cause. */
function failureOf(err: unknown): NetFailureInfo {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e?.name === "TimeoutError") return { timedOut: true, reason: e.message };
  return { timedOut: false, reason: e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err) };
}
