import type { ServerResponse } from "node:http";
import type { Bus } from "@opsplane/bus";
import type { Logger } from "@opsplane/platform";
import { type Pool, withDeadline, withTransaction } from "@opsplane/store";
import { type AsyncDelivery, answerFor, defaultMaxPending } from "./async-delivery-config.js";
import type { AsyncDeliveryMetrics } from "./async-delivery-metrics.js";
import { type DecisionRecord, eventOf, isPublished } from "./decision-log.js";
import type { Decision } from "./router.js";

/** A callback read whole, as it would have been forwarded. */
export interface QueuedCallback {
  method: string;
  path: string;
  /** Path and query exactly as received. */
  target: string;
  /** End-to-end headers as forwarded, `[name, value, …]`. */
  headers: string[];
  body: Buffer;
  requestId: string;
  /** performance.now() when the callback arrived. */
  started: number;
}

export type Intake = { answered: true; status: number } | { answered: false; why: string };

/**
 * The decision, the kept callback (as the decision log keeps it, so it can be shown and replayed)
 * and the delivery owed, in one statement: the decision's id is the delivery's.
 */
const queueSql = `WITH d AS (
    INSERT INTO decisions (at, request_id, method, path, rule, object_id, target_env, reason, detail, status, latency_ms)
    VALUES (to_timestamp($1::float8 / 1000), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    RETURNING id, at
  ), kept AS (
    INSERT INTO callback_payloads (decision_id, at, target, headers, body, body_size)
    SELECT id, at, $12, $13::jsonb, $14, $15 FROM d WHERE $16::boolean
  )
  INSERT INTO async_deliveries (id, env, request_id, method, target, headers, body, received_at, max_attempts, give_up_at,
    initial_backoff_ms, max_backoff_ms, next_attempt_at)
  SELECT id, $7, $2, $3, $12, $13::jsonb, $17, at, $18, at + make_interval(secs => $19), $20, $21, at FROM d
  RETURNING id::text AS id`;

/** How often a replica counts again what the environments it takes callbacks for owe. */
const pendingRecountMs = 1_000;

/**
 * Pending deliveries of each environment, at most `$2` counted: past the largest cap the number
 * changes no answer. Each count is a range of the (env, state) index.
 */
const pendingSql = `SELECT e.env,
    (SELECT count(*) FROM (SELECT 1 FROM async_deliveries d WHERE d.env = e.env AND d.state = 'pending' LIMIT $2) p)::int AS pending
  FROM unnest($1::text[]) AS e(env)`;

/**
 * Longest a callback waits for a count it started because the last one was over `pendingRecountMs`
 * old and said the environment was full: past it, that last count decides.
 */
const staleCountWaitMs = 250;

/** What one replica knows of what an environment owes. */
interface Owed {
  /** Pending deliveries at the last count (at most the largest cap: the count stops there). */
  counted: number;
  /**
   * Written by this replica since the last count that answered began (some may be in it too: the cap errs on
   * the safe side).
   */
  writtenSince: number;
  /** Admitted by this replica, their writes not finished: a place is taken before the write. */
  reserved: number;
  cap: number;
  full: boolean;
}

const owed = (e: Owed) => e.counted + e.writtenSince + e.reserved;

/**
 * What each asynchronous environment owes, as this replica knows it without a query per callback:
 * counted in PostgreSQL at most every `pendingRecountMs` (and only while callbacks for it arrive), plus
 * what this replica wrote since the count began and what it admitted whose write is under way. A place
 * is taken as a callback is admitted, before its write (given back if the write fails), so a burst of
 * callbacks admitted on one count cannot pass the cap by its size. A callback admitted by the last count
 * never waits for a count; another replica's callbacks are seen at its next count, so the cap holds to
 * within what the other replicas queue in about a second. A callback the last count would refuse, when
 * that count is over a second old or a newer one is running, waits for the newer one (at most
 * `staleCountWaitMs`): after a lull the last count may predate every delivery since, and refusing on it
 * would answer the third party with the environment's failure although nothing is owed.
 */
function createPendingCounts(pool: Pool, log: Logger) {
  const envs = new Map<string, Owed>();
  let countedAt = Number.NEGATIVE_INFINITY;
  /** The count under way, if one is. */
  let counting: Promise<void> | undefined;

  const recount = (): Promise<void> => {
    countedAt = performance.now();
    let limit = 0;
    // Written before the count began: in it once it answers. Until then the last count and all written since
    // it stand (forgetting them as the count began let a burst past the cap while it ran).
    const writtenBefore = new Map<string, number>();
    for (const [env, e] of envs) {
      writtenBefore.set(env, e.writtenSince);
      limit = Math.max(limit, e.cap);
    }
    return pool
      .query<{ env: string; pending: number }>(pendingSql, [[...envs.keys()], limit])
      .then(
        ({ rows }) => {
          for (const r of rows) {
            const e = envs.get(r.env)!;
            e.counted = r.pending;
            e.writtenSince -= writtenBefore.get(r.env) ?? 0;
          }
        },
        (err: Error) => log.debug({ err: err.message }, "asynchronous deliveries pending not counted; the last count stays"),
      )
      .finally(() => {
        counting = undefined;
      });
  };

  /** The answer of the count at hand, logged once each time it turns. */
  const decide = (env: string, e: Owed): boolean => {
    const full = owed(e) >= e.cap;
    if (full !== e.full) {
      e.full = full;
      if (full)
        log.warn(
          { env, maxPending: e.cap },
          `${env} owes at least ${e.cap} asynchronous deliveries (its asyncDelivery.maxPending): its callbacks are forwarded synchronously until some are delivered or dead-lettered`,
        );
      else
        log.info(
          { env, maxPending: e.cap },
          `${env} owes fewer than asyncDelivery.maxPending deliveries again: its callbacks are queued again`,
        );
    }
    return !full;
  };

  return {
    /**
     * Whether `env` may queue one more below `cap`, taking its place if so: at once when the last count
     * admits it; when it does not, after a count begun since (see above).
     */
    async admits(env: string, cap: number): Promise<boolean> {
      let e = envs.get(env);
      if (!e) {
        e = { counted: 0, writtenSince: 0, reserved: 0, cap, full: false };
        envs.set(env, e);
        countedAt = Number.NEGATIVE_INFINITY;
      }
      e.cap = cap;
      if (!counting && performance.now() - countedAt >= pendingRecountMs) counting = recount();
      if (owed(e) >= cap && counting) await withDeadline(counting, staleCountWaitMs, () => new Error("count too slow")).catch(() => {});
      const admitted = decide(env, e);
      if (admitted) e.reserved++;
      return admitted;
    },
    /** An admitted callback's write committed: its place is taken until a count sees it. */
    written(env: string): void {
      const e = envs.get(env)!;
      e.reserved--;
      e.writtenSince++;
    },
    /** An admitted callback's write failed: its place is free again. */
    released(env: string): void {
      envs.get(env)!.reserved--;
    },
  };
}

/**
 * Takes callbacks for asynchronous environments: each is written to PostgreSQL (decision, kept
 * callback, delivery owed) and committed *before* the third party is answered from the
 * environment's template, so nothing answered is ever lost. When it cannot be written in time
 * (PostgreSQL down or slow), or the environment already owes its `maxPending` deliveries, nothing
 * is answered from the template: the caller forwards the callback synchronously instead, and the
 * third party gets the environment's own answer.
 */
export function createAsyncIntake(o: {
  pool: Pool;
  bus: Bus;
  log: Logger;
  events: "notable" | "all" | "none";
  /** CALLBACK_STORE_MAX_BYTES: the kept copy for showing and replaying follows the decision log's rule. */
  storeMaxBytes: number;
  /** Longest the write may take, from waiting for a connection to COMMIT, before the callback is forwarded synchronously instead. */
  writeTimeoutMs: number;
  metrics: AsyncDeliveryMetrics;
  countCallback(rule: string, target: string, reason: string, status: number): void;
  /** Called once a delivery is committed: the local worker claims it at once. */
  queued(): void;
}) {
  const pending = createPendingCounts(o.pool, o.log);
  return {
    async accept(decision: Decision, config: AsyncDelivery, cb: QueuedCallback, res: ServerResponse): Promise<Intake> {
      const env = decision.target!.name;
      const cap = config.maxPending ?? defaultMaxPending;
      if (!(await pending.admits(env, cap))) {
        o.metrics.fallbacks.inc({ env, reason: "queue_full" });
        return {
          answered: false,
          why: `not queued for asynchronous delivery (${env} owes at least ${cap} deliveries, its asyncDelivery.maxPending); forwarded synchronously`,
        };
      }
      let contentType: string | undefined;
      for (let i = 0; i + 1 < cb.headers.length; i += 2)
        if (cb.headers[i]!.toLowerCase() === "content-type") contentType = cb.headers[i + 1];
      const answer = answerFor(config, contentType);
      const detail = `answered from ${env}'s asynchronous template; delivered in the background`;
      const record: DecisionRecord = {
        at: Date.now(),
        requestId: cb.requestId,
        method: cb.method,
        path: cb.path,
        rule: decision.rule,
        objectId: decision.objectId,
        targetEnv: env,
        reason: decision.reason,
        detail: decision.detail ? `${decision.detail}; ${detail}` : detail,
        status: answer.status,
        latencyMs: performance.now() - cb.started,
        error: undefined,
      };
      const keep = o.storeMaxBytes > 0;
      const keptBody = keep && cb.body.length <= o.storeMaxBytes ? cb.body : null;
      try {
        // The deadline covers what statement_timeout cannot (a full pool, a stalled network, a COMMIT
        // that never answers); statement_timeout stops PostgreSQL's side of a lock wait at the same time.
        await withTransaction(
          o.pool,
          async (tx) => {
            await tx.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(o.writeTimeoutMs))}`);
            await tx.query(queueSql, [
              record.at,
              record.requestId,
              record.method,
              record.path,
              record.rule ?? null,
              record.objectId ?? null,
              env,
              record.reason,
              record.detail,
              record.status,
              record.latencyMs,
              cb.target,
              JSON.stringify(cb.headers),
              keptBody,
              keep ? cb.body.length : null,
              keep,
              cb.body,
              config.maxAttempts,
              config.maxAgeSeconds,
              config.initialBackoffMs,
              config.maxBackoffMs,
            ]);
            if (isPublished(record, o.events)) await o.bus.publish(eventOf(record), { tx });
          },
          { deadlineMs: o.writeTimeoutMs },
        );
      } catch (err) {
        pending.released(env);
        o.metrics.fallbacks.inc({ env, reason: "not_written" });
        o.log.warn(
          { err: (err as Error).message, reqId: cb.requestId, env },
          "callback not queued for asynchronous delivery; forwarded synchronously",
        );
        return { answered: false, why: `not queued for asynchronous delivery (${(err as Error).message}); forwarded synchronously` };
      }
      pending.written(env);
      res.writeHead(answer.status, [...answer.headers, "x-request-id", cb.requestId]);
      res.end(answer.body);
      o.countCallback(decision.rule ?? "", env, decision.reason, answer.status);
      o.queued();
      return { answered: true, status: answer.status };
    },
  };
}

export type AsyncIntake = ReturnType<typeof createAsyncIntake>;
