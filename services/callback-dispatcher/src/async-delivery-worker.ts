import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "@opsplane/platform";
import type { Pool } from "@opsplane/store";
import type { AsyncDeliveryMetrics } from "./async-delivery-metrics.js";
import type { Resender } from "./resend.js";

/** A delivery this replica has claimed: its bytes, which attempt this is, and where its environment is now. */
interface Claimed {
  id: string;
  env: string;
  method: string;
  target: string;
  headers: string[];
  body: Buffer;
  attempt: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** The environment's base URL now; null once it has been deleted. */
  baseUrl: string | null;
  /** The replica whose lease on the previous attempt ran out before it recorded an outcome. */
  interruptedBy: string | null;
  /** When that attempt began (null for one claimed before leases kept their start). */
  interruptedAt: Date | null;
}

/**
 * Due deliveries, claimed for this replica: `FOR UPDATE SKIP LOCKED` lets replicas claiming at the
 * same moment take different rows, and moving `next_attempt_at` past the lease keeps the row from
 * every other claim until this replica records the outcome (or dies and the lease runs out).
 * Each environment gets at most `$4` in flight across the replicas (a soft cap: replicas claiming at
 * the same instant may pass it), its oldest first: ordered by due time alone, an environment that never
 * answers filled every slot with its backlog while the others' deliveries waited out its timeouts.
 */
const claimSql = `WITH RECURSIVE pending_envs(env) AS (
    (SELECT env FROM async_deliveries WHERE state = 'pending' ORDER BY env LIMIT 1)
    UNION ALL
    SELECT (SELECT d.env FROM async_deliveries d WHERE d.state = 'pending' AND d.env > e.env ORDER BY d.env LIMIT 1)
    FROM pending_envs e WHERE e.env IS NOT NULL
  ), picked AS (
    SELECT p.*, busy.n + row_number() OVER (PARTITION BY e.env ORDER BY p.next_attempt_at) AS nth
    FROM pending_envs e
    CROSS JOIN LATERAL (SELECT count(*) AS n FROM async_deliveries b
      WHERE b.env = e.env AND b.state = 'pending' AND b.leased_by IS NOT NULL AND b.next_attempt_at > now()) busy
    -- A constant LIMIT: one computed from the count left the planner costing the whole backlog (and compiling the query).
    CROSS JOIN LATERAL (
      SELECT d.id, d.leased_by, d.leased_at, d.next_attempt_at FROM async_deliveries d
      WHERE d.env = e.env AND d.state = 'pending' AND d.next_attempt_at <= now()
      ORDER BY d.next_attempt_at LIMIT $4 FOR UPDATE OF d SKIP LOCKED
    ) p
    WHERE e.env IS NOT NULL
  ), due AS (
    SELECT id, leased_by, leased_at FROM picked WHERE nth <= $4 ORDER BY next_attempt_at LIMIT $3
  )
  UPDATE async_deliveries d SET attempts = d.attempts + 1, leased_by = $1, leased_at = now(), next_attempt_at = now() + make_interval(secs => $2::float8 / 1000)
  FROM due WHERE d.id = due.id
  RETURNING d.id::text AS id, d.env, d.method, d.target, d.headers, d.body, d.attempts AS attempt,
    d.initial_backoff_ms AS "initialBackoffMs", d.max_backoff_ms AS "maxBackoffMs", due.leased_by AS "interruptedBy", due.leased_at AS "interruptedAt",
    (SELECT base_url FROM environments e WHERE e.name = d.env) AS "baseUrl"`;

/**
 * One attempt's outcome, fenced by the lease (this replica, this attempt): the attempt is recorded,
 * then the delivery is delivered, dead (attempts or age spent) or due again after `$9` ms, never
 * later than its deadline, so the last attempt is made at it.
 */
const outcomeSql = `WITH attempt AS (
    INSERT INTO async_delivery_attempts (delivery_id, attempt, at, env, replica, status, duration_ms, error)
    VALUES ($1, $3, $11, $4, $2, $5, $6, $7)
    ON CONFLICT (delivery_id, attempt) DO UPDATE SET at = EXCLUDED.at, status = EXCLUDED.status, duration_ms = EXCLUDED.duration_ms, error = EXCLUDED.error
  )
  UPDATE async_deliveries SET
    state = CASE WHEN $8 THEN 'delivered' WHEN attempts >= max_attempts OR now() >= give_up_at THEN 'dead' ELSE 'pending' END,
    next_attempt_at = CASE WHEN $8 THEN next_attempt_at ELSE LEAST(now() + make_interval(secs => $9::float8 / 1000), give_up_at) END,
    finished_at = CASE WHEN $8 OR attempts >= max_attempts OR now() >= give_up_at THEN now() END,
    dead_reason = CASE
      WHEN $8 THEN NULL
      WHEN attempts >= max_attempts THEN format('gave up after %s attempts (maxAttempts %s); last: %s', attempts, max_attempts, $10::text)
      WHEN now() >= give_up_at THEN format('gave up after %s attempts in %s s (maxAgeSeconds); last: %s',
        attempts, round(extract(epoch FROM give_up_at - received_at)), $10::text)
    END,
    leased_by = NULL, leased_at = NULL, last_status = $5, last_error = $7
  WHERE id = $1 AND leased_by = $2 AND attempts = $3
  RETURNING state, dead_reason AS "deadReason", CASE WHEN attempts >= max_attempts THEN 'max_attempts' ELSE 'max_age' END AS "deadKind"`;

/** Headers each attempt sets, so a receiver can tell deliveries and attempts apart (and drop a repeat). */
const deliveryHeaders = new Set(["x-delivery-id", "x-delivery-attempt"]);

/** The wait before the next attempt: doubling from the first, capped, with "equal jitter" (half fixed, half random) so replicas do not retry in step. */
export function backoffMs(attempt: number, initialMs: number, maxMs: number): number {
  const capped = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  return capped / 2 + Math.random() * (capped / 2);
}

/**
 * Delivers what asynchronous environments are owed, from PostgreSQL, on every replica. Each
 * replica claims due deliveries up to `concurrency` in flight, sends each to its environment's
 * current base URL, and records the attempt; failures are retried with backoff until the
 * delivery's attempts or age are spent, then it is dead-lettered with the reason. An attempt is
 * abandoned at half the lease, so a lease never runs out under a live attempt; a replica that dies
 * mid-attempt leaves the delivery to be claimed again when its lease ends (at least once: the
 * environment may then see it twice, with the same `X-Delivery-Id`).
 */
export function createAsyncDeliveryWorker(o: {
  pool: Pool;
  resender: Resender;
  log: Logger;
  metrics: AsyncDeliveryMetrics;
  concurrency: number;
  /** Deliveries of one environment in flight at once, across the replicas. */
  perEnvironment: number;
  pollMs: number;
  leaseMs: number;
  /** How long close() lets attempts in flight finish before abandoning them. */
  closeTimeoutMs: number;
}) {
  const replica = `${hostname()}:${randomUUID().slice(0, 8)}`;
  const attemptLimitMs = Math.floor(o.leaseMs / 2);
  const running = new Map<Promise<void>, AbortController>();
  let claiming: Promise<void> | undefined;
  let again = false;
  let closing = false;
  let failing = false;

  async function deliver(c: Claimed, abort: AbortController): Promise<void> {
    if (c.interruptedBy)
      await o.pool
        .query(
          `INSERT INTO async_delivery_attempts (delivery_id, attempt, at, env, replica, error)
           VALUES ($1, $2, coalesce($6, now()), $3, $4, $5)
           ON CONFLICT (delivery_id, attempt) DO NOTHING`,
          [
            c.id,
            c.attempt - 1,
            c.env,
            c.interruptedBy,
            "interrupted: the replica stopped or lost its lease mid-attempt; the environment may have received it",
            c.interruptedAt,
          ],
        )
        .catch((err) => o.log.warn({ err: (err as Error).message, delivery: c.id }, "interrupted attempt not recorded"));
    if (c.baseUrl === null) return deadForDeletedEnvironment(c);

    const headers: string[] = [];
    for (let i = 0; i + 1 < c.headers.length; i += 2)
      if (!deliveryHeaders.has(c.headers[i]!.toLowerCase())) headers.push(c.headers[i]!, c.headers[i + 1]!);
    headers.push("x-delivery-id", c.id, "x-delivery-attempt", String(c.attempt));
    const timer = setTimeout(
      () => abort.abort(new Error(`abandoned after ${attemptLimitMs} ms (half of ASYNC_DELIVERY_LEASE_MS)`)),
      attemptLimitMs,
    );
    // Recorded as the attempt's time, as an interrupted one's is: when it began, not when its outcome was written.
    const begun = new Date();
    const sent = await o.resender.send(c.baseUrl, c.method, c.target, headers, c.body, abort.signal);
    clearTimeout(timer);
    const ok = sent.status >= 200 && sent.status < 300;
    const error = ok ? null : (sent.error ?? `HTTP ${sent.status}${sent.response?.body ? `: ${sent.response.body.slice(0, 256)}` : ""}`);
    const last = `${c.env} (${c.baseUrl}) ${sent.error ? `failed (${sent.status}): ${sent.error}` : `answered ${error}`}`;
    const params = [
      c.id,
      replica,
      c.attempt,
      c.env,
      sent.status,
      sent.latencyMs,
      error,
      ok,
      backoffMs(c.attempt, c.initialBackoffMs, c.maxBackoffMs),
      last,
      begun,
    ];
    const row = await recordOutcome(c, params);
    if (!row) {
      o.log.warn(
        { delivery: c.id, attempt: c.attempt },
        "another replica took this delivery over while its attempt ran; its outcome stays with the attempt",
      );
      return;
    }
    o.metrics.attempts.inc({ env: c.env, outcome: row.state === "delivered" ? "delivered" : row.state === "dead" ? "dead" : "failed" });
    if (row.state === "dead") {
      o.metrics.deadLettered.inc({ env: c.env, reason: row.deadKind });
      o.log.warn({ delivery: c.id, env: c.env, reason: row.deadReason }, "asynchronous delivery dead-lettered");
    }
  }

  /**
   * The attempt happened, so its outcome is retried until written (250 ms doubling to 5 s) while the
   * replica runs: left unwritten, the delivery is attempted again once the lease ends.
   */
  async function recordOutcome(c: Claimed, params: unknown[]) {
    for (let delay = 250; ; delay = Math.min(delay * 2, 5_000)) {
      try {
        const { rows } = await o.pool.query<{ state: string; deadReason: string | null; deadKind: string }>(outcomeSql, params);
        return rows[0];
      } catch (err) {
        if (closing) throw err;
        o.log.warn({ err: (err as Error).message, delivery: c.id, retryInMs: delay }, "delivery outcome not recorded yet");
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  async function deadForDeletedEnvironment(c: Claimed): Promise<void> {
    const reason = `environment ${c.env} no longer exists (deleted while this delivery was pending); re-drive it to another environment`;
    const { rowCount } = await o.pool.query(
      `UPDATE async_deliveries SET state = 'dead', attempts = attempts - 1, leased_by = NULL, leased_at = NULL, finished_at = now(), dead_reason = $3
       WHERE id = $1 AND leased_by = $2`,
      [c.id, replica, reason],
    );
    if (!rowCount) return;
    o.metrics.deadLettered.inc({ env: c.env, reason: "environment_deleted" });
    o.log.warn({ delivery: c.id, env: c.env, reason }, "asynchronous delivery dead-lettered");
  }

  function start(c: Claimed): void {
    const abort = new AbortController();
    const done = deliver(c, abort)
      .catch((err) => o.log.error({ err, delivery: c.id }, "asynchronous delivery failed; it is attempted again once its lease ends"))
      .finally(() => {
        running.delete(done);
        pump();
      });
    running.set(done, abort);
  }

  /** Claims as many due deliveries as there is room for; once more while a claim was on its way if asked. */
  function pump(): void {
    if (closing) return;
    if (claiming) {
      again = true;
      return;
    }
    const room = o.concurrency - running.size;
    if (room <= 0) return;
    claiming = (async () => {
      try {
        const { rows } = await o.pool.query<Claimed>(claimSql, [replica, o.leaseMs, room, o.perEnvironment]);
        if (failing) o.log.info("asynchronous deliveries claimed again");
        failing = false;
        for (const c of rows) start(c);
        // A full batch: more may be due.
        if (rows.length === room) again = true;
      } catch (err) {
        if (!failing)
          o.log.warn({ err: (err as Error).message }, "asynchronous deliveries cannot be claimed; retrying every ASYNC_DELIVERY_POLL_MS");
        failing = true;
      } finally {
        claiming = undefined;
      }
      if (again) {
        again = false;
        pump();
      }
    })();
  }

  const timer = setInterval(pump, o.pollMs);
  timer.unref();
  pump();

  return {
    replica,
    /** A delivery was queued on this replica: claim it now rather than at the next poll. */
    wake: pump,
    /** Stops claiming, lets attempts in flight finish (at most `closeTimeoutMs`), then abandons the rest (they are retried). */
    async close(): Promise<void> {
      closing = true;
      clearInterval(timer);
      await claiming;
      if (!running.size) return;
      let timeout: NodeJS.Timeout | undefined;
      const expired = new Promise<void>((resolve) => {
        timeout = setTimeout(resolve, o.closeTimeoutMs);
      });
      await Promise.race([Promise.allSettled(running.keys()), expired]);
      clearTimeout(timeout);
      for (const abort of running.values()) abort.abort(new Error("abandoned: the replica is stopping"));
      await Promise.allSettled(running.keys());
    },
  };
}

export type AsyncDeliveryWorker = ReturnType<typeof createAsyncDeliveryWorker>;
