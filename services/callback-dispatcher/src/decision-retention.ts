import type { Logger } from "@opsplane/platform";
import { type Pool, tryAdvisoryXactLock, withTransaction } from "@opsplane/store";

/** Rows deleted per statement, so one sweep never holds a long lock or a huge transaction. */
const deleteBatch = 10_000;

/**
 * Deletes decisions older than the retention period. Every replica runs the
 * sweep; a transaction-scoped advisory lock lets one of them do it at a time
 * (the others skip that round). Deletes go in bounded batches via the `at` index.
 */
export function createDecisionRetention(o: { pool: Pool; schema: string; retentionDays: number; sweepMs: number; log: Logger }) {
  const lockName = `opsplane.${o.schema}.decision-retention`;
  let running: Promise<number> | undefined;

  async function sweepOnce(): Promise<number> {
    let deleted = 0;
    for (;;) {
      // -1: another replica holds the lock and sweeps this round.
      const n = await withTransaction(o.pool, async (tx) => {
        if (!(await tryAdvisoryXactLock(tx, lockName))) return -1;
        const res = await tx.query(
          `DELETE FROM decisions WHERE id IN (
             SELECT id FROM decisions WHERE at < now() - make_interval(days => $1) ORDER BY at LIMIT $2)`,
          [o.retentionDays, deleteBatch],
        );
        return res.rowCount ?? 0;
      });
      if (n < 0) return deleted;
      deleted += n;
      if (n < deleteBatch) return deleted;
    }
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
