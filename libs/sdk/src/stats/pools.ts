/**
 * PoolProbe helpers for the pools apps usually own, so `sdk.pool(pgPool(pool))` reports its use
 * against its maximum (the saturation index's connection- and worker-pool shares). Each reads the
 * library's own counters structurally: the SDK does not depend on pg, ioredis or undici.
 */
import type { PoolProbe } from "../contracts.js";

/** What the probes read of a `pg.Pool`. */
export interface PgPoolLike {
  totalCount: number;
  idleCount: number;
  waitingCount: number;
  options: { max?: number };
}

/** A pg Pool: clients checked out (total − idle) against `options.max` (pg's default 10), callers waiting for one. */
export function pgPool(pool: PgPoolLike, name = "pg"): PoolProbe {
  return {
    name,
    kind: "connection",
    read: () => ({ used: pool.totalCount - pool.idleCount, max: pool.options.max ?? 10, waiting: pool.waitingCount }),
  };
}

/** What the probe reads of an ioredis client (`offlineQueue` is not in its types). */
export interface IoredisLike {
  commandQueue: { length: number };
}

/**
 * An ioredis client: one connection that pipelines, so "used" is the commands sent and not yet
 * answered, against the `max` you consider full; commands queued while it is disconnected wait.
 */
export function ioredisPool(client: IoredisLike, options: { name?: string; max: number }): PoolProbe {
  const offline = client as unknown as { offlineQueue?: { length: number } };
  return {
    name: options.name ?? "redis",
    kind: "connection",
    read: () => ({ used: client.commandQueue.length, max: options.max, waiting: offline.offlineQueue?.length ?? 0 }),
  };
}

/** undici's PoolStats: `Pool.stats`, and each origin's entry of `Agent.stats`. */
export interface UndiciPoolStatsLike {
  connected: number | boolean;
  free?: number;
  queued?: number;
  running: number;
}

/**
 * An undici Pool or Agent: busy connections (connected − free; an Agent's origins added up)
 * against `max` (undici's `connections` option, unlimited by default, so you give it), requests
 * queued for a connection waiting.
 */
export function undiciPool(
  dispatcher: { stats: UndiciPoolStatsLike | Record<string, UndiciPoolStatsLike> },
  options: { name?: string; max: number },
): PoolProbe {
  return {
    name: options.name ?? "http",
    kind: "connection",
    read: () => {
      const stats = dispatcher.stats;
      const all = "running" in stats && typeof stats.running === "number" ? [stats as UndiciPoolStatsLike] : Object.values(stats);
      let used = 0;
      let waiting = 0;
      for (const s of all as UndiciPoolStatsLike[]) {
        // A single Client (an Agent with connections: 1) has no `free`: busy while it runs a request.
        used += typeof s.connected === "number" ? s.connected - (s.free ?? 0) : s.running > 0 ? 1 : 0;
        waiting += s.queued ?? 0;
      }
      return { used, max: options.max, waiting };
    },
  };
}

/** A worker pool of your own (piscina, worker_threads, a job runner): busy workers against its size. */
export function workerPool(options: { name: string; max: number; used: () => number; waiting?: () => number }): PoolProbe {
  return {
    name: options.name,
    kind: "worker",
    read: () => ({ used: options.used(), max: options.max, waiting: options.waiting?.() ?? 0 }),
  };
}
