import type { Logger } from "@opsplane/platform";
import type { Pool } from "@opsplane/store";
import { Counter, Gauge, type Registry } from "prom-client";
import { readRecord } from "./registry.js";

/** Scrapes within this long of each other share one count of the table (two gauges read it per scrape). */
const countReuseMs = 1_000;
/** Longest a scrape waits for the count; past it, the last counts are shown. */
const countDeadlineMs = 1_000;

/**
 * Asynchronous delivery's metrics. The two gauges are counted in PostgreSQL at scrape time, so every
 * replica reports the same totals (read them with max(), not sum()); every environment is exported,
 * at 0 when it owes nothing, so an alert has a series to read. Counters are this replica's.
 */
export function createAsyncDeliveryMetrics(registry: Registry, pool: Pool, log: Logger) {
  const registers = [registry];
  let counted: { at: number; rows: Promise<Array<{ env: string; pending: number; dead: number }>> } | undefined;
  let last: Array<{ env: string; pending: number; dead: number }> = [];

  const counts = () => {
    if (!counted || Date.now() - counted.at > countReuseMs)
      counted = {
        at: Date.now(),
        // Within a deadline: a database that stops answering held every scrape for the pool's query timeout (30 s),
        // past Prometheus's scrape timeout, so the replica's every metric went missing during the outage.
        rows: readRecord(pool, countDeadlineMs, (tx) =>
          tx.query<{ env: string; pending: number; dead: number }>(
            `SELECT e.env, count(d.id) FILTER (WHERE d.state = 'pending')::int AS pending, count(d.id) FILTER (WHERE d.state = 'dead')::int AS dead
             FROM (SELECT name AS env FROM environments UNION SELECT DISTINCT env FROM async_deliveries WHERE state <> 'delivered') e
             LEFT JOIN async_deliveries d ON d.env = e.env AND d.state <> 'delivered'
             GROUP BY e.env`,
          ),
        ).then(
          (r) => {
            last = r.rows;
            return r.rows;
          },
          (err: Error) => {
            // A scrape during a PostgreSQL outage shows the last counts rather than failing the whole page.
            log.debug({ err: err.message }, "asynchronous delivery counts unavailable");
            return last;
          },
        ),
      };
    return counted.rows;
  };

  return {
    pending: new Gauge({
      name: "callback_dispatcher_async_pending",
      help: "Callbacks answered from an asynchronous environment's template and not delivered yet, by environment (the same on every replica)",
      labelNames: ["env"] as const,
      registers,
      async collect() {
        const rows = await counts();
        this.reset();
        for (const r of rows) this.set({ env: r.env }, r.pending);
      },
    }),
    deadLetters: new Gauge({
      name: "callback_dispatcher_async_dead_letters",
      help: "Dead letters waiting for an operator (GET /_dispatcher/v1/deliveries?state=dead), by environment (the same on every replica)",
      labelNames: ["env"] as const,
      registers,
      async collect() {
        const rows = await counts();
        this.reset();
        for (const r of rows) this.set({ env: r.env }, r.dead);
      },
    }),
    attempts: new Counter({
      name: "callback_dispatcher_async_attempts_total",
      help: "Asynchronous delivery attempts made by this replica, by environment and outcome: delivered (2xx), failed (retried later), dead (failed and dead-lettered)",
      labelNames: ["env", "outcome"] as const,
      registers,
    }),
    deadLettered: new Counter({
      name: "callback_dispatcher_async_dead_lettered_total",
      help: "Deliveries this replica dead-lettered, by environment and reason: max_attempts, max_age, environment_deleted",
      labelNames: ["env", "reason"] as const,
      registers,
    }),
    fallbacks: new Counter({
      name: "callback_dispatcher_async_fallbacks_total",
      help:
        "Callbacks for an asynchronous environment forwarded synchronously instead of queued, by environment and reason: " +
        "not_written (PostgreSQL did not take the write in time), queue_full (the environment owes asyncDelivery.maxPending deliveries)",
      labelNames: ["env", "reason"] as const,
      registers,
    }),
  };
}

export type AsyncDeliveryMetrics = ReturnType<typeof createAsyncDeliveryMetrics>;
