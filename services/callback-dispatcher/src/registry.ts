import { type PoolClient, TransactionDeadlineError, withTransaction } from "@opsplane/store";
import type { Pool } from "pg";

export interface RegistrationInput {
  rule: string;
  id: string;
  ttlSeconds: number;
}

/** One agent report: ids seen in `env`, and who reported them (`app:agent-sit`), kept with each id. */
export interface RegistrationBatch {
  env: string;
  registeredBy: string;
  items: RegistrationInput[];
}

/** Runs in the transaction that records a batch, e.g. to write its audit row. */
export type AlongsideRecord = (tx: PoolClient) => Promise<void>;

/** What the record says about one (rule, id). */
export interface RegistrationRecord {
  env: string;
  registeredBy: string;
  registeredAt: string;
  expiresAt: string;
}

/**
 * Who registered a (rule, id), and when: `version` is the record's registration time in µs since the
 * epoch (undefined for a Redis copy written before versions were kept, and for a registration this
 * replica has just received, which is its environment's as configured now). Routing compares it with the
 * environment's creation: an environment deleted and created again does not inherit its predecessor's ids.
 */
export interface Registered {
  env: string;
  version?: number;
}

/**
 * Which test environment created each business object. PostgreSQL is the
 * record; lookups are served from Redis (several replicas, see redis-registry.ts)
 * or from this process's memory (single node: REDIS_URL unset, one replica).
 */
export interface Registry {
  readonly kind: "redis" | "memory";
  register(batch: RegistrationBatch, alongside: AlongsideRecord): Promise<void>;
  /** The environment that registered (rule, id) and has not expired, if any. */
  lookup(rule: string, id: string): Promise<Registered | undefined> | Registered | undefined;
  /** Deletes expired rows from the record. */
  purgeExpired(): Promise<number>;
  /** Stops background work (waiting for what runs) and closes the registry's own connections. */
  close(): Promise<void>;
}

/** A registration as written to the record: `version` (microseconds) orders registrations of the same (rule, id). */
export interface RecordedRegistration {
  rule: string;
  id: string;
  version: string;
}

/**
 * Writes a batch to the record (PostgreSQL), with its audit row, all or nothing, within `deadlineMs` or
 * failed with RecordTimeoutError (a lock on `registrations` must not hold the agent for the pool's
 * query timeout); answers each row's version.
 */
export async function record(
  pool: Pool,
  deadlineMs: number,
  { env, registeredBy, items }: RegistrationBatch,
  alongside: AlongsideRecord,
): Promise<RecordedRegistration[]> {
  return recordTransaction(pool, deadlineMs, {}, async (tx) => {
    // Latest registration wins: the same id created again in another environment moves its callbacks there.
    // clock_timestamp(), not now(): a transaction that waited on another's row lock writes the later
    // version, so the copies in Redis can be ordered the way the record was.
    const { rows } = await tx.query<RecordedRegistration>(
      `INSERT INTO registrations (rule, object_id, env, registered_by, registered_at, expires_at)
       SELECT r, i, $1, $2, clock_timestamp(), now() + make_interval(secs => t) FROM unnest($3::text[], $4::text[], $5::int[]) AS x(r, i, t)
       ON CONFLICT (rule, object_id) DO UPDATE
         SET env = excluded.env, registered_by = excluded.registered_by, registered_at = clock_timestamp(), expires_at = excluded.expires_at
       RETURNING rule, object_id AS id, (extract(epoch FROM registered_at) * 1000000)::bigint::text AS version`,
      [env, registeredBy, items.map((x) => x.rule), items.map((x) => x.id), items.map((x) => x.ttlSeconds)],
    );
    await alongside(tx);
    return rows;
  });
}

/** The record did not answer a read or a write within REGISTRY_RECORD_TIMEOUT_MS. */
export class RecordTimeoutError extends Error {
  constructor(deadlineMs: number) {
    super(`the PostgreSQL record did not answer within ${deadlineMs} ms (REGISTRY_RECORD_TIMEOUT_MS)`);
  }
}

/**
 * Runs `fn` in a transaction on the record, finished within `deadlineMs` or failed with RecordTimeoutError:
 * a stalled PostgreSQL (a lock, a full pool, a network that stops passing bytes) must not hold its caller
 * for the pool's query timeout (seconds). statement_timeout ends PostgreSQL's side of a lock wait at the
 * same moment, so transactions given up on do not pile up as backends waiting on the lock.
 */
export async function recordTransaction<T>(
  pool: Pool,
  deadlineMs: number,
  opts: { readOnly?: boolean },
  fn: (tx: PoolClient) => Promise<T>,
): Promise<T> {
  try {
    return await withTransaction(
      pool,
      async (tx) => {
        await tx.query(`SET LOCAL statement_timeout = ${deadlineMs}`);
        return fn(tx);
      },
      { ...opts, deadlineMs },
    );
  } catch (err) {
    // Either deadline may tell first (57014: the statement timeout); both mean the same to the caller.
    if (err instanceof TransactionDeadlineError || (err as { code?: string }).code === "57014") throw new RecordTimeoutError(deadlineMs);
    throw err;
  }
}

/** Runs `read` on the record, answered within `deadlineMs` or failed with RecordTimeoutError. */
export const readRecord = <T>(pool: Pool, deadlineMs: number, read: (tx: PoolClient) => Promise<T>): Promise<T> =>
  recordTransaction(pool, deadlineMs, { readOnly: true }, read);

/** The record of (rule, id) while it routes callbacks: the operators' lookup, not the hot path, answered within `deadlineMs`. */
export async function registrationRecord(
  pool: Pool,
  deadlineMs: number,
  rule: string,
  id: string,
): Promise<RegistrationRecord | undefined> {
  const { rows } = await readRecord(pool, deadlineMs, (tx) =>
    tx.query<RegistrationRecord>(
      `SELECT env, registered_by AS "registeredBy", registered_at AS "registeredAt", expires_at AS "expiresAt"
       FROM registrations WHERE rule = $1 AND object_id = $2 AND expires_at > now()`,
      [rule, id],
    ),
  );
  return rows[0];
}

export const purge = async (pool: Pool) => (await pool.query("DELETE FROM registrations WHERE expires_at < now()")).rowCount ?? 0;

/**
 * Single node: every registration passes through this process, so memory is
 * authoritative once loaded from the record at start-up. Bounded: past `max`
 * entries the oldest registration is evicted (and its callbacks go to production).
 * A registration is written to the record within `recordTimeoutMs`, or fails.
 */
export async function memoryRegistry(pool: Pool, max: number, recordTimeoutMs: number): Promise<Registry> {
  const entries = new Map<string, { registered: Registered; expiresAt: number }>();
  const key = (rule: string, id: string) => `${rule}\u0000${id}`;
  const put = (k: string, registered: Registered, expiresAt: number) => {
    entries.delete(k);
    entries.set(k, { registered, expiresAt });
    if (entries.size > max) entries.delete(entries.keys().next().value!);
  };
  const { rows } = await pool.query<{ rule: string; object_id: string; env: string; version: string; expires_ms: string }>(
    `SELECT rule, object_id, env, (extract(epoch FROM registered_at) * 1000000)::bigint AS version,
            (extract(epoch FROM expires_at) * 1000)::bigint AS expires_ms
     FROM registrations WHERE expires_at > now() ORDER BY registered_at DESC LIMIT $1`,
    [max],
  );
  for (const r of rows.reverse()) put(key(r.rule, r.object_id), { env: r.env, version: Number(r.version) }, Number(r.expires_ms));
  return {
    kind: "memory",
    async register(batch, alongside) {
      const written = new Map((await record(pool, recordTimeoutMs, batch, alongside)).map((r) => [key(r.rule, r.id), Number(r.version)]));
      const now = Date.now();
      for (const x of batch.items) {
        const k = key(x.rule, x.id);
        put(k, { env: batch.env, version: written.get(k) }, now + x.ttlSeconds * 1000);
      }
    },
    lookup(rule, id) {
      const k = key(rule, id);
      const e = entries.get(k);
      if (!e) return undefined;
      if (e.expiresAt <= Date.now()) {
        entries.delete(k);
        return undefined;
      }
      return e.registered;
    },
    purgeExpired: () => purge(pool),
    close: async () => {},
  };
}
