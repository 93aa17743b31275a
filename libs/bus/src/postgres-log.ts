import { randomUUID } from "node:crypto";
import type { Queryable } from "@opsplane/store";
import type { BusEvent, PublishInput } from "./bus.js";

/** LISTEN/NOTIFY channel; the payload is the topic that received events. */
export const NOTIFY_CHANNEL = "opsplane_bus";

/** The relay's cursor reads every topic. */
export const ALL_TOPICS = "*";

/**
 * A place in the log. Events are ordered by (txid, seq); both are kept as decimal
 * strings because xid8 is a 64-bit counter.
 */
export interface Position {
  txid: string;
  seq: string;
}

export function comparePositions(a: Position, b: Position): number {
  const t = BigInt(a.txid) - BigInt(b.txid);
  if (t !== 0n) return t < 0n ? -1 : 1;
  const s = BigInt(a.seq) - BigInt(b.seq);
  return s === 0n ? 0 : s < 0n ? -1 : 1;
}

export interface LoggedEvent extends BusEvent {
  position: Position;
}

export interface TraceContext {
  traceparent?: string;
  tracestate?: string;
}

export interface EventDefaults {
  source: string;
  traceContext?: () => TraceContext | undefined;
}

/** A row ready for the outbox: the envelope with `data` already serialised. */
export interface OutboxRow {
  id: string;
  topic: string;
  key: string | null;
  type: string;
  source: string;
  subject: string | null;
  time: string;
  data: string;
  traceparent: string | null;
  tracestate: string | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function toOutboxRows(inputs: PublishInput[], defaults: EventDefaults): OutboxRow[] {
  const time = new Date().toISOString();
  return inputs.map((e) => {
    if (!e.topic || !e.type) throw new Error("bus: an event needs a topic and a type");
    // Checked here so one bad id fails its own publish, not the batch it would join.
    if (e.id !== undefined && !UUID.test(e.id)) throw new Error(`bus: event id must be a UUID, got ${JSON.stringify(e.id)}`);
    const trace = e.traceparent ? e : (defaults.traceContext?.() ?? {});
    return {
      id: e.id ?? randomUUID(),
      topic: e.topic,
      key: e.key ?? null,
      type: e.type,
      source: defaults.source,
      subject: e.subject ?? null,
      time,
      data: JSON.stringify(e.data ?? null),
      traceparent: trace.traceparent ?? null,
      tracestate: trace.tracestate ?? null,
    };
  });
}

// One statement, so it is atomic on its own and joins the caller's transaction when
// there is one. Arrays keep the parameter count fixed whatever the batch size, and
// the NOTIFY rides in the same transaction: a rollback neither lands nor wakes anyone.
const APPEND_SQL = `
WITH ins AS (
  INSERT INTO bus.events (id, topic, key, type, source, subject, time, data, traceparent, tracestate)
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::timestamptz[], $8::json[], $9::text[], $10::text[])
  ON CONFLICT (id) DO NOTHING
  RETURNING topic
)
SELECT pg_notify('${NOTIFY_CHANNEL}', topic) FROM (SELECT DISTINCT topic FROM ins) t`;

export async function appendEvents(q: Queryable, rows: OutboxRow[]): Promise<void> {
  if (rows.length === 0) return;
  await q.query(APPEND_SQL, [
    rows.map((r) => r.id),
    rows.map((r) => r.topic),
    rows.map((r) => r.key),
    rows.map((r) => r.type),
    rows.map((r) => r.source),
    rows.map((r) => r.subject),
    rows.map((r) => r.time),
    rows.map((r) => r.data),
    rows.map((r) => r.traceparent),
    rows.map((r) => r.tracestate),
  ]);
}

export interface LogRead {
  /** Events safe to deliver, in log order. */
  events: LoggedEvent[];
  /** Committed events exist past these, but an older transaction is still open; read again soon. */
  waiting: boolean;
}

/** An outbox row as read back: the same envelope, with `time` and `data` parsed by PostgreSQL. */
interface EventRow extends Omit<OutboxRow, "time" | "data"> {
  txid: string;
  seq: string;
  time: Date;
  data: unknown;
  safe: boolean;
}

// The oldest transaction of this database still running, as of now: rows with a
// lower txid are final. Transactions of other databases cannot write our table, so
// unlike the snapshot's xmin they do not hold delivery back (a slow CREATE DATABASE
// or batch job elsewhere on the server would otherwise delay every event).
// pg_stat_activity shows 32-bit xids; they are matched to the snapshot's 64-bit ones.
const GATE_SQL = `
SELECT COALESCE(
  (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
   WHERE (x::text::numeric % 4294967296)::text IN (
     SELECT backend_xid::text FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL
     UNION ALL
     SELECT transaction::text FROM pg_prepared_xacts WHERE database = current_database())),
  pg_snapshot_xmax(pg_current_snapshot()))::text AS gate`;

const readSql = (allTopics: boolean, bounded: boolean) => `
SELECT e.txid::text AS txid, e.seq::text AS seq, e.id, e.topic, e.key, e.type, e.source, e.subject, e.time, e.data,
       e.traceparent, e.tracestate, e.txid < $5::xid8 AS safe
FROM bus.events e
WHERE ${allTopics ? "$1::text IS NOT NULL" : "e.topic = $1"}
  AND (e.txid, e.seq) > ($2::xid8, $3::bigint)
  ${bounded ? "AND (e.txid, e.seq) <= ($6::xid8, $7::bigint)" : ""}
ORDER BY e.txid, e.seq
LIMIT $4`;

/**
 * Reads the events after `after` (up to `upTo` when given). Gap safety: a row is
 * delivered only once every transaction that could still add a row before it has
 * ended. The gate (oldest running transaction of this database) is taken before
 * the read's snapshot, so every row below it is committed and visible to the read,
 * and no row can later appear below it: a consumer whose offset moved past such a
 * row has skipped nothing.
 */
export async function readLog(q: Queryable, topic: string, after: Position, upTo: Position | null, limit: number): Promise<LogRead> {
  const gate = (await q.query<{ gate: string }>(GATE_SQL)).rows[0]!.gate;
  const params: unknown[] = [topic, after.txid, after.seq, limit, gate];
  if (upTo) params.push(upTo.txid, upTo.seq);
  const { rows } = await q.query<EventRow>(readSql(topic === ALL_TOPICS, upTo !== null), params);
  const events: LoggedEvent[] = [];
  for (const r of rows) {
    if (!r.safe) return { events, waiting: true };
    events.push({
      position: { txid: r.txid, seq: r.seq },
      id: r.id,
      topic: r.topic,
      key: r.key,
      type: r.type,
      source: r.source,
      time: r.time.toISOString(),
      data: r.data,
      attempt: 1,
      ...(r.subject !== null ? { subject: r.subject } : {}),
      ...(r.traceparent !== null ? { traceparent: r.traceparent } : {}),
      ...(r.tracestate !== null ? { tracestate: r.tracestate } : {}),
    });
  }
  return { events, waiting: false };
}
