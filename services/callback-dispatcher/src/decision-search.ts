import { badRequest, isCredentialHeader, notAllowed, notFound, redactCredentials, timeRange } from "@opsplane/platform";
import { type Queryable, storableText } from "@opsplane/store";
import { reasons } from "./router.js";

/** Every reason a decision is recorded with: routing's, and a forwarding loop refused before routing. */
const recordedReasons: ReadonlySet<string> = new Set([...reasons, "forwarding_loop"]);

/** Filters of a decision search; every one optional, all combined. */
export interface DecisionQuery {
  rule?: string;
  objectId?: string;
  /** Environment the callback went to. */
  target?: string;
  reason?: string;
  requestId?: string;
  /** RFC 3339 instants with a zone: `from` ≤ at < `to`. */
  from?: string;
  to?: string;
  limit?: number;
  /** A `nextPageToken` from the previous page. */
  pageToken?: string;
}

export interface DecisionRow {
  id: string;
  at: string;
  requestId: string;
  method: string;
  path: string;
  rule: string | null;
  objectId: string | null;
  targetEnv: string | null;
  reason: string;
  detail: string | null;
  status: number;
  latencyMs: number;
  error: string | null;
  /** Whether the callback's bytes are still kept, so it can be replayed. */
  replayable: boolean;
}

/** Largest id a `bigint` column (`bigserial`) holds. */
const maxRowId = 2n ** 63n - 1n;

/** Whether `s` is a decimal number PostgreSQL's `bigint` holds: an id that may exist. Anything larger names no row. */
export function isRowId(s: string): boolean {
  // Leading zeros aside, at most 19 digits: a longer number is never read in full.
  const m = /^0*(\d{1,19})$/.exec(s);
  return m !== null && BigInt(m[1]!) <= maxRowId;
}

/** The last microsecond of year 9999: no decision was recorded later, and the page token's time is never past it. */
const maxAtUs = 253_402_300_799_999_999n;

const columns = `d.id::text AS id, d.at, d.request_id AS "requestId", d.method, d.path, d.rule, d.object_id AS "objectId",
  d.target_env AS "targetEnv", d.reason, d.detail, d.status, d.latency_ms AS "latencyMs", d.error,
  (p.body IS NOT NULL) AS replayable`;

/**
 * Recorded decisions, newest first, `limit` at a time. The page token is the position of the last
 * row (its time in microseconds and its id), so pages neither repeat nor skip rows while new
 * decisions keep arriving.
 */
export async function searchDecisions(db: Queryable, q: DecisionQuery): Promise<{ decisions: DecisionRow[]; nextPageToken: string }> {
  const limit = q.limit ?? 100;
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, ...values: unknown[]) => {
    let clause = sql;
    for (const v of values) {
      params.push(v);
      clause = clause.replace("?", `$${params.length}`);
    }
    where.push(clause);
  };
  // Text is stored made storable (a NUL as the text \u0000): a filter as the callback sent it finds
  // its rows, and one PostgreSQL could not take (a NUL in a rule name) finds none instead of failing.
  if (q.rule) add("d.rule = ?", storableText(q.rule));
  if (q.objectId) add("d.object_id = ?", storableText(q.objectId));
  if (q.target) add("d.target_env = ?", storableText(q.target));
  if (q.reason) {
    // A misspelt reason would find nothing, which reads as "none happened".
    if (!recordedReasons.has(q.reason)) {
      const allowed = [...recordedReasons];
      throw notAllowed(`reason must be one of ${allowed.join(", ")}`, "reason", "querystring", allowed);
    }
    add("d.reason = ?", q.reason);
  }
  if (q.requestId) add("d.request_id = ?", storableText(q.requestId));
  const { from, to } = timeRange(q);
  if (from) add("d.at >= ?::timestamptz", from);
  if (to) add("d.at < ?::timestamptz", to);
  if (q.pageToken) {
    const m = /^(\d{1,19})-(\d{1,19})$/.exec(q.pageToken);
    if (!m || BigInt(m[1]!) > maxAtUs || !isRowId(m[2]!)) throw badRequest("pageToken must be a nextPageToken this API returned");
    add("(d.at, d.id) < (timestamptz 'epoch' + ?::bigint * interval '1 microsecond', ?::bigint)", m[1], m[2]);
  }
  params.push(limit + 1);
  const { rows } = await db.query<DecisionRow & { atUs: string }>(
    `SELECT ${columns}, (extract(epoch FROM d.at) * 1000000)::bigint::text AS "atUs"
     FROM decisions d LEFT JOIN callback_payloads p ON p.decision_id = d.id
     ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
     ORDER BY d.at DESC, d.id DESC LIMIT $${params.length}`,
    params,
  );
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    decisions: page.map(({ atUs: _, ...r }) => r),
    nextPageToken: rows.length > limit && last ? `${last.atUs}-${last.id}` : "",
  };
}

/**
 * A kept header list for showing: `[{name, value}]` with credentials (as the platform's logs censor them)
 * replaced by their length; the replay sends them as they came.
 */
export function maskedHeaders(list: string[]): Array<{ name: string; value: string }> {
  const out: Array<{ name: string; value: string }> = [];
  for (let i = 0; i + 1 < list.length; i += 2) {
    const name = list[i]!;
    const value = list[i + 1]!;
    // Kept as Node reads header bytes (Latin-1: one character a byte), so the count is of the bytes as sent.
    out.push({ name, value: isCredentialHeader(name) ? `[masked: ${Buffer.byteLength(value, "latin1")} bytes]` : value });
  }
  return out;
}

/** One kept callback, as the replay needs it. */
export interface KeptCallback {
  decision: DecisionRow;
  method: string;
  target: string;
  headers: string[];
  body: Buffer | null;
  bodySize: number | null;
  /** Whether its bytes are still kept at all (not yet past CALLBACK_RETENTION_DAYS, or ever stored). */
  kept: boolean;
}

export async function keptCallback(db: Queryable, id: string): Promise<KeptCallback> {
  if (!/^\d+$/.test(id)) throw badRequest("decision id must be a number");
  if (!isRowId(id)) throw notFound(`no decision ${id}`);
  const { rows } = await db.query<
    DecisionRow & { target: string | null; headers: string[] | null; body: Buffer | null; bodySize: number | null }
  >(
    `SELECT ${columns}, p.target, p.headers, p.body, p.body_size AS "bodySize"
     FROM decisions d LEFT JOIN callback_payloads p ON p.decision_id = d.id WHERE d.id = $1`,
    [id],
  );
  const row = rows[0];
  if (!row) throw notFound(`no decision ${id}`);
  const { target, headers, body, bodySize, ...decision } = row;
  return {
    decision,
    method: decision.method,
    target: target ?? decision.path,
    headers: headers ?? [],
    body,
    bodySize,
    kept: target !== null,
  };
}

/** One decision with its kept callback (secrets masked) and its replays: what an operator looks at before replaying. */
export async function decisionDetail(db: Queryable, id: string) {
  const c = await keptCallback(db, id);
  const { rows: replays } = await db.query(
    `SELECT id::text AS id, at, target_env AS "targetEnv", actor, request_id AS "requestId", status, latency_ms AS "latencyMs", error
     FROM callback_replays WHERE decision_id = $1 ORDER BY callback_replays.id`, // the column: `id` alone is the text alias
    [id],
  );
  const text = c.body ? new TextDecoder("utf-8", { fatal: false }).decode(c.body) : undefined;
  return {
    decision: c.decision,
    callback: c.kept
      ? {
          // Credentials in the query (`?access_token=…`, `&sign=…`) as the logs redact them.
          target: redactCredentials(c.target),
          headers: maskedHeaders(c.headers),
          bodySize: c.bodySize,
          body: c.body?.toString("base64") ?? null,
          // As text too when it is text (most notifications): what the operator reads.
          bodyText: text !== undefined && Buffer.from(text).equals(c.body!) ? text : null,
        }
      : null,
    replays,
  };
}
