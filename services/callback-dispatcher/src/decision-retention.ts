import type { Logger } from "@opsplane/platform";
import { type Pool, tryAdvisoryXactLock, withTransaction } from "@opsplane/store";

/** Rows deleted per statement, so one sweep never holds a long lock or a huge transaction. */
const deleteBatch = 10_000;

/**
 * Deletes decisions older than the retention period. Every replica runs the
 * sweep; a transaction-scoped advisory lock lets one of them do it at a time
 * (the others skip that round). Deletes go in bounded batches via the `at` index.
 */
export function createDecisionRetention(o: {
  pool: Pool;
  schema: string;
  retentionDays: number;
  /** Kept callbacks (bytes and headers) go sooner: they are larger, and hold what third parties sent. */
  callbackRetentionDays?: number;
  /** Dead letters no operator re-drove (default: as decisions). */
  deadLetterRetentionDays?: number;
  sweepMs: number;
  log: Logger;
}) {
  const lockName = `opsplane.${o.schema}.decision-retention`;
  let running: Promise<number> | undefined;

  // What goes, oldest first: decisions and their replays after the retention period, kept callbacks after theirs.
  const tables = [
    { table: "decisions", key: "id", at: "at", days: o.retentionDays },
    { table: "callback_replays", key: "id", at: "at", days: o.retentionDays },
    {
      table: "callback_payloads",
      key: "decision_id",
      at: "at",
      days: Math.min(o.callbackRetentionDays ?? o.retentionDays, o.retentionDays),
    },
    // Finished asynchronous deliveries (their attempts go with them): delivered ones with their decisions, dead letters after theirs.
    { table: "async_deliveries", key: "id", at: "finished_at", state: "delivered", days: o.retentionDays },
    { table: "async_deliveries", key: "id", at: "finished_at", state: "dead", days: o.deadLetterRetentionDays ?? o.retentionDays },
  ];

  /** Rows deleted from each table; -1 when another replica held the lock (and sweeps this round). */
  async function sweepTable(t: (typeof tables)[number]): Promise<number> {
    let deleted = 0;
    for (;;) {
      const n = await withTransaction(o.pool, async (tx) => {
        if (!(await tryAdvisoryXactLock(tx, lockName))) return -1;
        const condition = `${t.state ? "state = $3 AND " : ""}${t.at} < now() - make_interval(secs => $1 * 86400)`;
        const res = await tx.query(
          // The conditions again outside the subquery: a row changed while the DELETE waited for its lock (a dead
          // letter redriven, so pending again) is checked anew there, and kept; the subquery's are not re-checked.
          `DELETE FROM ${t.table} WHERE ${t.key} IN (
             SELECT ${t.key} FROM ${t.table} WHERE ${condition}
             ORDER BY ${t.at} LIMIT $2) AND ${condition}`,
          t.state ? [t.days, deleteBatch, t.state] : [t.days, deleteBatch],
        );
        return res.rowCount ?? 0;
      });
      if (n < 0) return deleted ? deleted : -1;
      deleted += n;
      if (n < deleteBatch) return deleted;
    }
  }

  async function sweepOnce(): Promise<number> {
    let deleted = 0;
    for (const t of tables) {
      const n = await sweepTable(t);
      if (n < 0) return deleted;
      deleted += n;
    }
    return deleted;
  }

  const sweep = () => {
    running ??= sweepOnce()
      .then((n) => {
        if (n) o.log.info({ deleted: n, retentionDays: o.retentionDays }, "old decisions deleted");
        return n;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const tick = () => void sweep().catch((err) => o.log.warn({ err: (err as Error).message }, "decision retention sweep failed"));
  const timer = setInterval(tick, o.sweepMs);
  timer.unref();
  tick();

  return {
    sweep,
    async close(): Promise<void> {
      clearInterval(timer);
      await running?.catch(() => {});
    },
  };
}
