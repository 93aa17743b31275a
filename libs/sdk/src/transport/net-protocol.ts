/**
 * The messages between the app's thread and the SDK's network thread (net-thread.ts,
 * net-worker.ts). Every request carries an id: a call's answer comes back under it, and a socket
 * or a Redis client is named by the id it was opened with.
 */
export type ToNetThread =
  | { t: "http"; id: number; url: string; method: string; headers: Record<string, string>; body?: string; timeoutMs: number }
  | { t: "ws-open"; id: number; url: string; headers: Record<string, string>; handshakeTimeoutMs: number }
  | { t: "ws-send"; id: number; text: string }
  | { t: "ws-close"; id: number; code: number; reason: string }
  | { t: "ws-terminate"; id: number }
  | { t: "redis-open"; id: number; url: string; timeoutMs: number; retryStepMs: number; retryMaxMs: number }
  | { t: "redis-call"; id: number; redis: number; command: "get" | "mget"; args: string[] }
  | { t: "redis-close"; id: number };

export type FromNetThread =
  | { t: "http"; id: number; status: number; retryAfter: string | null; text: string }
  | { t: "redis-reply"; id: number; value: string | null | Array<string | null> }
  /** A call (http, redis-call) that got no answer. */
  | { t: "failed"; id: number; failure: NetFailureInfo }
  | { t: "ws"; id: number; event: SocketEvent }
  | { t: "redis"; id: number; event: RedisEvent };

export type SocketEvent =
  | { type: "open" }
  | { type: "message"; text: string; binary: boolean }
  /** The handshake was answered with this status instead of an upgrade; a close follows. */
  | { type: "refused"; status: number }
  | { type: "error"; message: string }
  | { type: "close"; code: number; reason: string };

/** Why a call got no answer: `timedOut` after its timeout, else `reason` (ECONNREFUSED, ENOTFOUND, a message). */
export interface NetFailureInfo {
  timedOut: boolean;
  reason: string;
}

export type RedisEvent =
  | { type: "ready" }
  | { type: "error"; message: string }
  /** The network thread stopped, and the client with it (sent by the app's side). */
  | { type: "lost"; message: string };
