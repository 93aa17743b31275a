import { create } from "@bufbuild/protobuf";
import type { Bus, PublishInput } from "@opsplane/bus";
import { CallbackDispatchedSchema, toEventData, topics } from "@opsplane/contracts";
import {
  BatchWriter,
  type BatchWriterLogger,
  type DropReason,
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
}

/** Routine outcomes: production answered a callback that is not a test environment's. */
const routineReasons = new Set(["no_rule", "not_registered"]);

/** Whether a decision is published: routine production traffic is only recorded, unless "all". */
function isPublished(d: DecisionRecord, events: "notable" | "all" | "none"): boolean {
  if (events !== "notable") return events === "all";
  return d.status >= 500 || !routineReasons.has(d.reason);
}

/** One queued decision: its row as JSON, and its `callback.dispatched` event when it is published. */
interface Queued {
  requestId: string;
  row: string;
  event: PublishInput | undefined;
}

function eventOf(d: DecisionRecord): PublishInput {
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

/**
 * Records decisions off the hot path: each is serialised as it is added (a
 * microsecond or two after its callback was answered, never in a burst that
 * would hold up the callbacks behind it), then written in one multi-row insert
 * per flush together with its `callback.dispatched` event, in one transaction.
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
}) {
  async function write(batch: Queued[]): Promise<void> {
    // The rows travel as one JSON parameter: `at` as epoch milliseconds, since Date#toJSON is slow.
    const rows = `[${batch.map((q) => q.row).join(",")}]`;
    const published = batch.flatMap((q) => (q.event ? [q.event] : []));
    await withTransaction(o.pool, async (client) => {
      await client.query(
        `INSERT INTO decisions (at, request_id, method, path, rule, object_id, target_env, reason, detail, status, latency_ms, error)
         SELECT to_timestamp(at / 1000), "requestId", method, path, rule, "objectId", "targetEnv", reason, detail, status, "latencyMs", error
         FROM json_to_recordset($1::json) AS x(at float8, "requestId" text, method text, path text, rule text, "objectId" text,
              "targetEnv" text, reason text, detail text, status int, "latencyMs" float8, error text)`,
        [rows],
      );
      await o.bus.publish(published, { tx: client });
    });
  }

  const writer = new BatchWriter<Queued>({
    what: "decisions",
    write,
    // The whole row: the log keeps the decision the table could not.
    describe: (q) => ({ requestId: q.requestId, decision: q.row }),
    log: o.log,
    flushMs: o.flushMs,
    maxBatch: 1000,
    maxQueued: o.maxQueue,
    closeTimeoutMs: o.closeTimeoutMs,
    onDrop: o.onDrop,
  });

  return {
    add(decision: DecisionRecord): void {
      let d = decision;
      let row = JSON.stringify(d);
      if (mayNeedStorableJson(row)) {
        d = storableJson(d);
        row = JSON.stringify(d);
      }
      writer.add({ requestId: d.requestId, row, event: isPublished(d, o.events) ? eventOf(d) : undefined });
    },
    flush: () => writer.flush(),
    close: () => writer.close(),
  };
}

export type DecisionLog = ReturnType<typeof createDecisionLog>;
