import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "@opsplane/platform";
import type { Pool } from "@opsplane/store";

type RegistryKind = "redis" | "memory";

export interface ReplicaRoster {
  /** Why this replica's routing disagrees with the other replicas on its database; undefined when it does not. */
  readonly conflict: string | undefined;
  /** Stops the heartbeat and removes this replica's row. */
  close(): Promise<void>;
}

interface Peer {
  host: string;
  registry: RegistryKind;
}

/** How many heartbeat intervals a replica may miss before it counts as gone (a crashed one leaves its row). */
const missedBeats = 3;

/** "dispatcher-7f9c, dispatcher-2b1d": the hosts of some replicas, for a readiness reason. */
const hostsOf = (peers: Peer[]) => [...new Set(peers.map((p) => p.host))].join(", ");

/**
 * Why a replica using `mine` routes callbacks wrongly beside `peers`, if it does. Without Redis a
 * replica knows only the registrations it received itself; with Redis, one sharing its database
 * with a replica without Redis never sees the registrations that one received.
 */
export function rosterConflict(mine: RegistryKind, peers: Peer[]): string | undefined {
  if (mine === "memory" && peers.length)
    return (
      `${peers.length} other replica(s) use this database (${hostsOf(peers)}); without REDIS_URL this one routes only ` +
      "the registrations it received itself, and sends callbacks registered through the others to production: set REDIS_URL on every replica, or run one"
    );
  const memory = peers.filter((p) => p.registry === "memory");
  if (memory.length)
    return (
      `replica(s) on ${hostsOf(memory)} run without REDIS_URL on this database: the registrations they receive never reach Redis, ` +
      "so this replica sends those callbacks to production; set REDIS_URL on every replica"
    );
  return undefined;
}

/**
 * Each replica's heartbeat in PostgreSQL (`replicas`), so a replica can tell which others share its
 * database and which registry they route from. Without it a replica started without REDIS_URL beside
 * others routed callbacks to production silently; now `conflict` says why, and /readyz with it.
 */
export async function createReplicaRoster(o: {
  pool: Pool;
  registry: RegistryKind;
  heartbeatMs: number;
  log: Logger;
}): Promise<ReplicaRoster> {
  const id = randomUUID();
  const host = hostname();
  let conflict: string | undefined;

  const beat = async () => {
    const staleSeconds = (missedBeats * o.heartbeatMs) / 1000;
    await o.pool.query(
      `INSERT INTO replicas (id, host, registry) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET seen_at = now()`,
      [id, host, o.registry],
    );
    // Rows of replicas long gone (crashed, never deleted their row) are cleared by whoever beats.
    await o.pool.query("DELETE FROM replicas WHERE seen_at < now() - make_interval(secs => $1)", [staleSeconds * 100]);
    const { rows } = await o.pool.query<Peer>(
      "SELECT host, registry FROM replicas WHERE id <> $1 AND seen_at > now() - make_interval(secs => $2)",
      [id, staleSeconds],
    );
    const now = rosterConflict(o.registry, rows);
    if (now !== conflict) {
      if (now) o.log.warn({ replicas: rows.length + 1 }, now);
      else o.log.info("replica registries agree again");
    }
    conflict = now;
  };

  await beat();
  let beating: Promise<void> | undefined;
  const timer = setInterval(() => {
    // PostgreSQL unreachable: the last view stands until a beat gets through.
    beating ??= beat()
      .catch((err) => o.log.debug({ err: (err as Error).message }, "replica heartbeat failed"))
      .finally(() => {
        beating = undefined;
      });
  }, o.heartbeatMs);
  timer.unref();

  return {
    get conflict() {
      return conflict;
    },
    async close() {
      clearInterval(timer);
      await beating;
      await o.pool.query("DELETE FROM replicas WHERE id = $1", [id]).catch(() => undefined);
    },
  };
}
