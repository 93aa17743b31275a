import type { Logger } from "@opsplane/platform";
import { type Pool, tryAdvisoryXactLock, withTransaction } from "@opsplane/store";
import type { ConfigMetrics } from "./metrics.js";

/** Rows deleted per statement, so one pass never holds a long lock or a huge transaction. */
const deleteBatch = 10_000;

/**
 * Prunes the change log: a change older than `retentionDays` goes unless it is one of the newest
 * `keepMin` changes of its item, so every item keeps its recent history (rollback and diff reach
 * back that far at least) and its latest change (what reconnect catch-ups find changed keys by).
 * Every replica runs it; a transaction-scoped advisory lock lets one of them do it at a time.
 */
export function startHistoryPruning(o: {
  pool: Pool;
  metrics: ConfigMetrics;
  log: Logger;
  retentionDays: number;
  keepMin: number;
  intervalMs: number;
}) {
  let running: Promise<number> | undefined;

  async function pruneOnce(): Promise<number> {
    let pruned = 0;
    for (;;) {
      // -1: another replica holds the lock and prunes this round.
      const n = await withTransaction(o.pool, async (tx) => {
        if (!(await tryAdvisoryXactLock(tx, "config-center.history-pruning"))) return -1;
        const { rowCount } = await tx.query(
          `DELETE FROM changes WHERE id IN (
             SELECT id FROM (
               SELECT c.id, c.at, row_number() OVER (PARTITION BY c.kind, c.app, c.env, c.key ORDER BY c.version DESC, c.id DESC) AS newer
               FROM changes c
               WHERE (c.kind, c.app, c.env, c.key) IN (SELECT kind, app, env, key FROM changes WHERE at < now() - make_interval(days => $1))
             ) ranked
             WHERE newer > $2 AND at < now() - make_interval(days => $1)
             LIMIT $3)`,
          [o.retentionDays, o.keepMin, deleteBatch],
        );
        return rowCount ?? 0;
      });
      if (n < 0) return pruned;
      pruned += n;
      if (n < deleteBatch) return pruned;
    }
  }

  const prune = () => {
    running ??= pruneOnce()
      .then((n) => {
        if (n) {
          o.metrics.historyPruned.inc(n);
          o.log.info({ pruned: n, retentionDays: o.retentionDays, keepMin: o.keepMin }, "old changes pruned from the history");
        }
        return n;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const tick = () => void prune().catch((err) => o.log.warn({ err: (err as Error).message }, "history pruning failed; retrying later"));
  const timer = setInterval(tick, o.intervalMs);
  timer.unref();
  tick();

  return {
    async close(): Promise<void> {
      clearInterval(timer);
      await running?.catch(() => {});
    },
  };
}
