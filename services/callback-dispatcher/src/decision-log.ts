import { create } from "@bufbuild/protobuf";
import type { Bus } from "@opsplane/bus";
import { CallbackDispatchedSchema, toEventData, topics } from "@opsplane/contracts";
import type { Logger } from "@opsplane/platform";
import type { Pool } from "pg";

export interface DecisionRecord {
  at: Date;
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

/**
 * Records decisions off the hot path: queued in memory, written in one
 * multi-row insert per flush together with their `callback.dispatched` events
 * (those `isPublished` selects), in the same transaction.
 * The queue is bounded; overflow is dropped and counted, never blocking callbacks.
 */
/** Routine outcomes: production answered a callback that is not a test environment's. */
const routineReasons = new Set(["no_rule", "not_registered"]);

/** Whether a decision is published: routine production traffic is only recorded, unless "all". */
export function isPublished(d: DecisionRecord, events: "notable" | "all" | "none"): boolean {
  if (events !== "notable") return events === "all";
  return d.status >= 500 || !routineReasons.has(d.reason);
}

export function createDecisionLog(o: {
  pool: Pool;
  bus: Bus;
  log: Logger;
  flushMs: number;
  maxQueue: number;
  events: "notable" | "all" | "none";
  onDrop(): void;
}) {
  let queue: DecisionRecord[] = [];
  let flushing: Promise<void> | undefined;
  const batchSize = 1000;

  async function write(batch: DecisionRecord[]): Promise<void> {
    const client = await o.pool.connect();
    try {
      await client.query("BEGIN");
      // One JSON parameter: serialising it is far cheaper than twelve text arrays.
      await client.query(
        `INSERT INTO decisions (at, request_id, method, path, rule, object_id, target_env, reason, detail, status, latency_ms, error)
         SELECT at, "requestId", method, path, rule, "objectId", "targetEnv", reason, detail, status, "latencyMs", error
         FROM json_to_recordset($1::json) AS x(at timestamptz, "requestId" text, method text, path text, rule text, "objectId" text,
              "targetEnv" text, reason text, detail text, status int, "latencyMs" float8, error text)`,
        [JSON.stringify(batch)],
      );
      const published = batch.filter((d) => isPublished(d, o.events));
      await o.bus.publish(
        published.map((d) => ({
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
        })),
        { tx: client },
      );
      await client.query("COMMIT");
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async function drain(): Promise<void> {
    while (queue.length) {
      const batch = queue.slice(0, batchSize);
      try {
        await write(batch);
        queue = queue.slice(batch.length);
      } catch (err) {
        o.log.warn({ err: (err as Error).message, queued: queue.length }, "could not record decisions; will retry");
        return;
      }
    }
  }
  const flush = () => {
    flushing ??= drain().finally(() => {
      flushing = undefined;
    });
    return flushing;
  };
  const timer = setInterval(() => void flush(), o.flushMs);
  timer.unref();

  return {
    add(d: DecisionRecord): void {
      if (queue.length >= o.maxQueue) o.onDrop();
      else queue.push(d);
    },
    flush,
    async close(): Promise<void> {
      clearInterval(timer);
      await flush();
    },
  };
}

export type DecisionLog = ReturnType<typeof createDecisionLog>;
