import pg from "pg";
import { withDeadline } from "./deadline.js";

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that runs queries: the pool, or a client holding an open transaction. */
export type Queryable = pg.Pool | pg.PoolClient | pg.ClientBase;

export interface PoolOptions {
  /** The service's own schema; unqualified table names resolve to it. */
  schema: string;
  /** Shown in pg_stat_activity, so a DBA can tell services apart. */
  applicationName: string;
  max?: number;
  /**
   * How long acquiring a connection may take (connecting, or waiting for a free one) before it
   * fails; unset waits forever, and a database that stops answering hangs every request.
   */
  connectTimeoutMs?: number;
  /**
   * How long a query may go unanswered on an open connection (a partition, a frozen server) before
   * it fails with "Query read timeout"; unset waits forever.
   */
  queryTimeoutMs?: number;
}

// int8 (bigint) columns come back as strings by default; counts and ids in this
// platform stay far below 2^53, so numbers are what callers expect.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

export function createPool(connectionString: string, opts: PoolOptions): pg.Pool {
  assertIdentifier(opts.schema);
  const pool = new pg.Pool({
    connectionString,
    application_name: opts.applicationName,
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 0,
    ...(opts.queryTimeoutMs ? { query_timeout: opts.queryTimeoutMs } : {}),
    options: `-c search_path=${opts.schema},public`,
  });
  // An idle client losing its connection (database restart) must not crash the process;
  // the pool replaces it and readiness reports the outage.
  pool.on("error", () => {});
  return pool;
}

export interface TransactionOptions {
  isolation?: "read committed" | "repeatable read" | "serializable";
  readOnly?: boolean;
  /**
   * Longest the whole transaction may take, from waiting for a connection to the answer to COMMIT.
   * Past it the call fails with `TransactionDeadlineError` and the connection is destroyed, so
   * PostgreSQL aborts whatever was not committed. A COMMIT already sent may still have committed:
   * the caller must treat a deadline as "unknown", not "nothing written". PostgreSQL's own
   * `statement_timeout` cannot cover a stalled network, a full pool or a COMMIT that never answers.
   */
  deadlineMs?: number;
}

/** A transaction given `deadlineMs` did not finish in time (see TransactionOptions.deadlineMs). */
export class TransactionDeadlineError extends Error {
  constructor(readonly deadlineMs: number) {
    super(`transaction did not finish within ${deadlineMs} ms`);
  }
}

/**
 * Runs `fn` in a transaction: commit when it resolves, roll back when it throws.
 * `repeatable read` with `readOnly` gives several reads that see one snapshot.
 */
export async function withTransaction<T>(pool: pg.Pool, fn: (tx: pg.PoolClient) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
  const { deadlineMs } = opts;
  if (deadlineMs === undefined) return runTransaction(pool, fn, opts, undefined);
  const deadline = { passed: false, onPass: (): void => {} };
  // withDeadline also handles the transaction's own failure once the deadline has answered (its connection destroyed).
  return withDeadline(runTransaction(pool, fn, opts, deadline), deadlineMs, () => {
    deadline.passed = true;
    deadline.onPass();
    return new TransactionDeadlineError(deadlineMs);
  });
}

async function runTransaction<T>(
  pool: pg.Pool,
  fn: (tx: pg.PoolClient) => Promise<T>,
  opts: TransactionOptions,
  deadline: { passed: boolean; onPass: () => void } | undefined,
): Promise<T> {
  const { client, release } = await checkOut(pool);
  let released = false;
  const releaseOnce = (broken?: Error) => {
    if (released) return;
    released = true;
    release(broken);
  };
  if (deadline) {
    // Destroying the connection is what makes PostgreSQL abort the transaction we stopped waiting for.
    if (deadline.passed) {
      // The wait for a connection used the time up; nothing was started on it.
      releaseOnce();
      throw new TransactionDeadlineError(opts.deadlineMs!);
    }
    deadline.onPass = () => releaseOnce(new TransactionDeadlineError(opts.deadlineMs!));
  }
  let rollbackFailed: Error | undefined;
  try {
    await client.query(
      `BEGIN${opts.isolation ? ` ISOLATION LEVEL ${opts.isolation.toUpperCase()}` : ""}${opts.readOnly ? " READ ONLY" : ""}`,
    );
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    // A rollback that fails leaves the connection in no known state: it is discarded, not reused.
    rollbackFailed = released
      ? undefined
      : await client.query("ROLLBACK").then(
          () => undefined,
          (e: Error) => e,
        );
    throw err;
  } finally {
    releaseOnce(rollbackFailed);
  }
}

/**
 * Takes a client from the pool for several queries. A connection lost between two queries is an
 * 'error' event on the client, which ends the process when nobody listens (pg-pool listens only
 * while the client is idle): kept here, it fails the next query instead, and `release` discards
 * the client rather than return it to the pool (also when given the error that left it broken).
 */
export async function checkOut(pool: pg.Pool): Promise<{ client: pg.PoolClient; release(broken?: Error): void }> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const onLost = (err: Error) => {
    lost = err;
  };
  client.on("error", onLost);
  return {
    client,
    release: (broken?: Error) => {
      client.off("error", onLost);
      client.release(lost ?? broken);
    },
  };
}

/** Schema names are interpolated into SQL, so only plain identifiers are accepted. */
export function assertIdentifier(name: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid SQL identifier: ${JSON.stringify(name)}`);
}

/**
 * Takes a transaction-scoped advisory lock named `name`, waiting for whoever holds it: writers of
 * the same rows (a delete-then-insert replacing them) then run one after the other instead of
 * racing into a unique-key violation.
 */
export async function advisoryXactLock(tx: Queryable, name: string): Promise<void> {
  await tx.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [name]);
}

/**
 * Takes a transaction-scoped advisory lock named `name` if nobody holds it. Periodic jobs that
 * every replica runs (retention sweeps) use it so one replica does the work and the others skip.
 */
export async function tryAdvisoryXactLock(tx: Queryable, name: string): Promise<boolean> {
  const { rows } = await tx.query<{ locked: boolean }>("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked", [name]);
  return rows[0]!.locked;
}
