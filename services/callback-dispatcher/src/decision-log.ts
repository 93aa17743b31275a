import { create } from "@bufbuild/protobuf";
import type { Bus, PublishInput } from "@opsplane/bus";
import { CallbackDispatchedSchema, toEventData, topics } from "@opsplane/contracts";
import {
  BatchWriter,
  type BatchWriterLogger,
  type DropReason,
  isDataError,
  mayNeedStorableJson,
  type Pool,
  storableJson,
  withTransaction,
} from "@opsplane/store";

export interface DecisionRecord {
  /** When the callback was answered, epoch milliseconds (a number serialises to JSON far faster than a Date). */
  at: number;
  requestId: string;
  method: string;
  path: string;
  rule: string | undefined;
  objectId: string | undefined;
  targetEnv: string | undefined;
  reason: string;
  detail: string | undefined;
  status: number;
  latencyMs: number;
  error: string | undefined;
  /** The callback as forwarded, kept for showing and replaying it (absent when payloads are not kept). */
  payload?: CallbackPayload;
}

/** What is kept of one callback: enough to send it again byte for byte. */
export interface CallbackPayload {
  /** Path and query exactly as received. */
  target: string;
  /** End-to-end headers as forwarded, `[name, value, …]`. */
  headers: string[];
  /** The exact body, or undefined when it was not read whole (over the extraction limit). */
  body: Buffer | undefined;
}

/** Routine outcomes: production answered a callback that is not a test environment's. */
const routineReasons = new Set(["no_rule", "not_registered"]);

/** Whether a decision is published: routine production traffic is only recorded, unless "all". */
export function isPublished(d: DecisionRecord, events: "notable" | "all" | "none"): boolean {
  if (events !== "notable") return events === "all";
  return d.status >= 500 || !routineReasons.has(d.reason);
}

/** One queued decision: its row as JSON, its kept body, and its `callback.dispatched` event when it is published. */
interface Queued {
  requestId: string;
  /**
   * The row's JSON as UTF-8 bytes, encoded as the decision is added: held as bytes outside the
   * JavaScript heap, a decision waiting for its flush is no string that young-generation collections
   * copy and then promote (as strings, most rows were: about 1 KB promoted a callback, a third of it now).
   */
  row: Buffer;
  /**
   * The kept body bytes, sent with the others of its batch as one binary parameter (no base64, no
   * escaping); the row holds its length. Undefined when none is kept. Counted against `maxPayloadBytes`.
   */
  body: Buffer | undefined;
  event: PublishInput | undefined;
}

/**
 * A decision as its row's JSON: the decision without its kept callback, of one shape for every
 * decision, serialised once. Fields left undefined are omitted (NULL in the row); the kept callback's
 * fields only when it is kept.
 */
type Row = Omit<DecisionRecord, "payload" | "latencyMs"> & {
  /** Whole microseconds: a fraction of a millisecond takes several times longer to serialise. */
  latencyUs: number;
  /** Set when the callback is kept: its request target and headers as forwarded. */
  target: string | undefined;
  headers: string[] | undefined;
  /** Bytes of the kept body in the batch's body parameter; undefined when the body is not kept. */
  bodyLength: number | undefined;
  /** The body's size as received; undefined when it was not read whole. */
  bodySize: number | undefined;
};

export function eventOf(d: DecisionRecord): PublishInput {
  return {
    topic: topics.callbackDispatched.name,
    type: topics.callbackDispatched.type,
    key: d.objectId ?? d.requestId,
    data: toEventData(
      topics.callbackDispatched,
      create(CallbackDispatchedSchema, {
        rule: d.rule ?? "",
        objectId: d.objectId ?? "",
        targetEnv: d.targetEnv ?? "",
        reason: d.reason,
        status: d.status,
        latencyMs: d.latencyMs,
        method: d.method,
        path: d.path,
        requestId: d.requestId,
        error: d.error ?? "",
      }),
    ),
  };
}

/** A row for the log: the decision without its callback's headers and body (they may hold credentials). */
function withoutPayload(row: Buffer): string {
  const { headers: _headers, bodyLength: _bodyLength, ...decision } = JSON.parse(row.toString()) as Record<string, unknown>;
  return JSON.stringify(decision);
}

/** The rows of a batch as one JSON array, in bytes: `[row,row,…]`. */
function rowsArray(batch: Queued[]): Buffer {
  let size = batch.length + 1;
  for (const q of batch) size += q.row.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < batch.length; i++) {
    out[at++] = i === 0 ? 0x5b : 0x2c; // "[" before the first row, "," before the others
    at += batch[i]!.row.copy(out, at);
  }
  out[at] = 0x5d; // "]"
  return out;
}

/**
 * One flush: the decisions, each drawing its id first so its payload row (when its callback is kept)
 * carries it. $1 is the rows' JSON, $2 the kept bodies end to end, each cut out by its length in row order.
 */
const insertSql = `WITH x AS MATERIALIZED (
   SELECT nextval('decisions_id_seq') AS id, x.*, (sum("bodyLength") OVER (ORDER BY ordinality))::int AS "bodyEnd"
   FROM ROWS FROM (json_to_recordset($1::json) AS (at float8, "requestId" text, method text, path text, rule text,
     "objectId" text, "targetEnv" text, reason text, detail text, status int, "latencyUs" float8, error text,
     target text, headers jsonb, "bodyLength" int, "bodySize" int)) WITH ORDINALITY AS x
 ), decided AS (
   INSERT INTO decisions (id, at, request_id, method, path, rule, object_id, target_env, reason, detail, status, latency_ms, error)
   SELECT id, to_timestamp(at / 1000), "requestId", method, path, rule, "objectId", "targetEnv", reason, detail, status,
          "latencyUs" / 1000, error FROM x
 )
 INSERT INTO callback_payloads (decision_id, at, target, headers, body, body_size)
 SELECT id, to_timestamp(at / 1000), target, headers,
        CASE WHEN "bodyLength" IS NOT NULL THEN substring($2::bytea FROM "bodyEnd" - "bodyLength" + 1 FOR "bodyLength") END,
        "bodySize"
 FROM x WHERE target IS NOT NULL`;

/**
 * Records decisions off the hot path: each is serialised as it is added (a
 * microsecond or two after its callback was answered, never in a burst that
 * would hold up the callbacks behind it), then written in one multi-row insert
 * per flush (kept callbacks included), in one transaction with the flush's
 * `callback.dispatched` events when there are some.
 * Strings PostgreSQL cannot store (NUL, lone surrogates: an id a callback sent)
 * are escaped as the decision is added; a row it still refuses is dropped alone
 * and counted, and an outage keeps every decision and retries (see BatchWriter).
 * The queue is bounded; overflow is dropped and counted, never blocking callbacks.
 */
export function createDecisionLog(o: {
  pool: Pool;
  bus: Bus;
  log: BatchWriterLogger;
  flushMs: number;
  maxQueue: number;
  /** Longest close() waits for PostgreSQL (see BatchWriter). */
  closeTimeoutMs: number;
  events: "notable" | "all" | "none";
  onDrop(reason: DropReason, count: number): void;
  /** Largest body kept with its decision (CALLBACK_STORE_MAX_BYTES); 0 or absent keeps no payloads. */
  storeMaxBytes?: number;
  /** Most body bytes queued at once; past it decisions are still recorded, without their payload. */
  maxPayloadBytes?: number;
  onPayloadDropped?(): void;
}) {
  let payloadBytes = 0;
  const storeMaxBytes = o.storeMaxBytes ?? 0;
  const maxPayloadBytes = o.maxPayloadBytes ?? Number.POSITIVE_INFINITY;
  const released = (batch: Queued[]) => {
    for (const q of batch) if (q.body) payloadBytes -= q.body.length;
  };

  async function write(batch: Queued[]): Promise<void> {
    // The rows travel as one JSON parameter, sent as bytes (`at` as epoch milliseconds, since Date#toJSON
    // is slow), the kept bodies as one binary parameter, each row's body cut from it by its length in row order.
    const rows = rowsArray(batch);
    const bodies: Buffer[] = [];
    const published: PublishInput[] = [];
    for (const q of batch) {
      if (q.body) bodies.push(q.body);
      if (q.event) published.push(q.event);
    }
    const params = [rows, bodies.length === 1 ? bodies[0]! : Buffer.concat(bodies)];
    try {
      // One statement is atomic on its own: a transaction only when events go with it.
      if (!published.length) await o.pool.query(insertSql, params);
      else
        await withTransaction(o.pool, async (client) => {
          await client.query(insertSql, params);
          await o.bus.publish(published, { tx: client });
        });
    } catch (err) {
      // A row refused alone is dropped by the writer: its body leaves the queue too.
      if (batch.length === 1 && isDataError(err)) released(batch);
      throw err;
    }
    released(batch);
  }

  const writer = new BatchWriter<Queued>({
    what: "decisions",
    write,
    // The whole row: the log keeps the decision the table could not.
    describe: (q) => ({ requestId: q.requestId, decision: withoutPayload(q.row) }),
    log: o.log,
    flushMs: o.flushMs,
    maxBatch: 1000,
    maxQueued: o.maxQueue,
    closeTimeoutMs: o.closeTimeoutMs,
    onDrop: o.onDrop,
  });

  return {
    add(decision: DecisionRecord): void {
      const payload = storeMaxBytes > 0 ? decision.payload : undefined;
      let body = payload?.body && payload.body.length <= storeMaxBytes ? payload.body : undefined;
      let kept = payload !== undefined;
      if (kept && payloadBytes + (body?.length ?? 0) > maxPayloadBytes) {
        o.onPayloadDropped?.();
        kept = false;
        body = undefined;
      }
      let row: Row = {
        at: decision.at,
        requestId: decision.requestId,
        method: decision.method,
        path: decision.path,
        rule: decision.rule,
        objectId: decision.objectId,
        targetEnv: decision.targetEnv,
        reason: decision.reason,
        detail: decision.detail,
        status: decision.status,
        latencyUs: Math.round(decision.latencyMs * 1000),
        error: decision.error,
        target: kept ? payload!.target : undefined,
        headers: kept ? payload!.headers : undefined,
        bodyLength: body?.length,
        bodySize: kept ? payload!.body?.length : undefined,
      };
      let json = JSON.stringify(row);
      let published = decision;
      if (mayNeedStorableJson(json)) {
        row = storableJson(row);
        json = JSON.stringify(row);
        published = { ...row, latencyMs: decision.latencyMs };
      }
      const event = isPublished(published, o.events) ? eventOf(published) : undefined;
      if (writer.add({ requestId: row.requestId, row: Buffer.from(json), body, event }) && body) payloadBytes += body.length;
    },
    flush: () => writer.flush(),
    close: () => writer.close(),
  };
}

export type DecisionLog = ReturnType<typeof createDecisionLog>;
