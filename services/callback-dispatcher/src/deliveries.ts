import { type Auditor, badRequest, conflict, notFound, type Principal, redactCredentials, timeRange } from "@opsplane/platform";
import { type Pool, type Queryable, withTransaction } from "@opsplane/store";
import { type AsyncDelivery, defaultRetryPolicy } from "./async-delivery-config.js";
import { isRowId, maskedHeaders } from "./decision-search.js";

export type DeliveryState = "pending" | "delivered" | "dead";

/** One asynchronous delivery as operators see it; its id is its callback's decision id. */
export interface DeliveryRow {
  id: string;
  env: string;
  state: DeliveryState;
  requestId: string;
  method: string;
  target: string;
  receivedAt: string;
  attempts: number;
  maxAttempts: number;
  giveUpAt: string;
  /** When the next attempt is due (pending), or when the current one's lease ends. */
  nextAttemptAt: string | null;
  lastStatus: number | null;
  lastError: string | null;
  /** Why it was dead-lettered. */
  deadReason: string | null;
  /** When it was delivered or dead-lettered. */
  finishedAt: string | null;
}

export interface DeliveryAttempt {
  attempt: number;
  at: string;
  env: string;
  replica: string;
  /** Null: no outcome is known (the replica stopped mid-attempt). */
  status: number | null;
  durationMs: number | null;
  error: string | null;
}

// `id` here is text: sorting must name the column (`async_deliveries.id`), or "99" lists before "100".
const columns = `id::text AS id, env, state, request_id AS "requestId", method, target, received_at AS "receivedAt", attempts,
  max_attempts AS "maxAttempts", give_up_at AS "giveUpAt", CASE WHEN state = 'pending' THEN next_attempt_at END AS "nextAttemptAt",
  last_status AS "lastStatus", last_error AS "lastError", dead_reason AS "deadReason", finished_at AS "finishedAt"`;

export interface DeliveryQuery {
  state?: DeliveryState;
  env?: string;
  /** RFC 3339; on when the callback arrived: `from` ≤ receivedAt < `to`. */
  from?: string;
  to?: string;
  limit?: number;
  pageToken?: string;
}

/** Deliveries, newest callback first, `limit` at a time; `state=dead` is the dead-letter list. */
export async function listDeliveries(db: Queryable, q: DeliveryQuery): Promise<{ deliveries: DeliveryRow[]; nextPageToken: string }> {
  const limit = q.limit ?? 100;
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace("?", `$${params.length}`));
  };
  if (q.state) add("state = ?", q.state);
  if (q.env) add("env = ?", q.env);
  const { from, to } = timeRange(q);
  if (from) add("received_at >= ?::timestamptz", from);
  if (to) add("received_at < ?::timestamptz", to);
  if (q.pageToken) {
    if (!isRowId(q.pageToken)) throw badRequest("pageToken must be a nextPageToken this API returned");
    add("id < ?::bigint", q.pageToken);
  }
  params.push(limit + 1);
  const { rows } = await db.query<DeliveryRow>(
    `SELECT ${columns} FROM async_deliveries ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY async_deliveries.id DESC LIMIT $${params.length}`,
    params,
  );
  const page = rows.slice(0, limit);
  return { deliveries: page.map(shown), nextPageToken: rows.length > limit ? page[page.length - 1]!.id : "" };
}

async function attemptsOf(db: Queryable, id: string): Promise<DeliveryAttempt[]> {
  const { rows } = await db.query<DeliveryAttempt>(
    `SELECT attempt, at, env, replica, status, duration_ms AS "durationMs", error FROM async_delivery_attempts WHERE delivery_id = $1 ORDER BY attempt`,
    [id],
  );
  return rows;
}

/** A delivery as shown: credentials in its target's query (`?access_token=…`) redacted as the logs do; the delivery sends them as they came. */
const shown = (d: DeliveryRow): DeliveryRow => ({ ...d, target: redactCredentials(d.target) });

/** A decision's asynchronous delivery and its attempts, or null when its callback was answered synchronously. */
export async function deliveryOfDecision(
  db: Queryable,
  id: string,
): Promise<{ delivery: DeliveryRow; attempts: DeliveryAttempt[] } | null> {
  const { rows } = await db.query<DeliveryRow>(`SELECT ${columns} FROM async_deliveries WHERE id = $1`, [id]);
  if (!rows[0]) return null;
  return { delivery: shown(rows[0]), attempts: await attemptsOf(db, id) };
}

/** One delivery with its callback (secrets in headers masked, as decisions show them) and every attempt. */
export async function deliveryDetail(db: Queryable, id: string) {
  if (!isRowId(id)) throw notFound(`no asynchronous delivery ${id}`);
  const { rows } = await db.query<DeliveryRow & { headers: string[]; body: Buffer }>(
    `SELECT ${columns}, headers, body FROM async_deliveries WHERE id = $1`,
    [id],
  );
  const row = rows[0];
  if (!row) throw notFound(`no asynchronous delivery ${id}`);
  const { headers, body, ...kept } = row;
  const delivery = shown(kept);
  const text = new TextDecoder("utf-8", { fatal: false }).decode(body);
  return {
    delivery,
    callback: {
      target: delivery.target,
      headers: maskedHeaders(headers),
      bodySize: body.length,
      body: body.toString("base64"),
      bodyText: Buffer.from(text).equals(body) ? text : null,
    },
    attempts: await attemptsOf(db, id),
  };
}

/**
 * Puts a dead letter back in the queue (audited in the same transaction), to its environment or to
 * `env`, with a fresh retry budget: the target environment's policy when it is asynchronous, else
 * the defaults. Its attempts so far stay in its history.
 */
export async function redrive(
  pool: Pool,
  audit: Auditor,
  r: { id: string; env?: string; principal: Principal | undefined; requestId: string },
): Promise<DeliveryRow> {
  if (!isRowId(r.id)) throw notFound(`no asynchronous delivery ${r.id}`);
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ env: string; state: DeliveryState; deadReason: string | null; attempts: number }>(
      `SELECT env, state, dead_reason AS "deadReason", attempts FROM async_deliveries WHERE id = $1 FOR UPDATE`,
      [r.id],
    );
    const before = rows[0];
    if (!before) throw notFound(`no asynchronous delivery ${r.id}`);
    if (before.state !== "dead")
      throw conflict(
        before.state === "pending"
          ? `delivery ${r.id} is still pending: it is being retried`
          : `delivery ${r.id} was delivered; to send it again, replay its decision (POST /_dispatcher/v1/decisions/${r.id}/replay)`,
      );
    const envName = r.env ?? before.env;
    const env = (
      await tx.query<{ asyncDelivery: AsyncDelivery | null }>(
        `SELECT async_delivery AS "asyncDelivery" FROM environments WHERE name = $1`,
        [envName],
      )
    ).rows[0];
    if (!env)
      throw r.env
        ? notFound(`no environment ${envName}`)
        : conflict(`environment ${envName}, where it was owed, no longer exists; name one to re-drive it to ("env": "…")`);
    const policy = env.asyncDelivery ?? defaultRetryPolicy;
    const { rows: updated } = await tx.query<DeliveryRow>(
      `UPDATE async_deliveries SET env = $2, state = 'pending', max_attempts = attempts + $3, give_up_at = now() + make_interval(secs => $4),
         initial_backoff_ms = $5, max_backoff_ms = $6, next_attempt_at = now(), leased_by = NULL, leased_at = NULL, dead_reason = NULL, finished_at = NULL
       WHERE id = $1 RETURNING ${columns}`,
      [r.id, envName, policy.maxAttempts, policy.maxAgeSeconds, policy.initialBackoffMs, policy.maxBackoffMs],
    );
    await audit.record(tx, {
      principal: r.principal,
      action: "callback.redrive",
      target: `delivery/${updated[0]!.id}`,
      before: { env: before.env, state: before.state, deadReason: before.deadReason, attempts: before.attempts },
      after: { env: envName, state: "pending", maxAttempts: updated[0]!.maxAttempts, giveUpAt: updated[0]!.giveUpAt },
      requestId: r.requestId,
    });
    return shown(updated[0]!);
  });
}
