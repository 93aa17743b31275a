import { tryAdvisoryXactLock, withTransaction } from "@opsplane/store";
import type pg from "pg";
import type { BusLogger } from "./logger.js";

export const DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000;
const SWEEP_BATCH = 10_000;

/**
 * Deletes events (and inbox rows) older than `retentionMs`, in batches so no
 * transaction grows large. A transaction-scoped advisory lock means only one replica
 * sweeps at a time; the others return at once. Like Kafka's retention it ignores
 * consumer offsets: a group that lags more than the retention loses the oldest events.
 * Returns the number of events deleted.
 */
export async function sweepRetention(pool: pg.Pool, retentionMs: number): Promise<number> {
  const cutoff = "now() - make_interval(secs => $1::double precision / 1000)";
  let deleted = 0;
  for (;;) {
    const n = await withTransaction(pool, async (tx) => {
      if (!(await tryAdvisoryXactLock(tx, "opsplane.bus.retention"))) return 0;
      const r = await tx.query(
        `DELETE FROM bus.events WHERE ctid = ANY (ARRAY(SELECT ctid FROM bus.events WHERE created_at < ${cutoff} LIMIT ${SWEEP_BATCH}))`,
        [retentionMs],
      );
      await tx.query(
        `DELETE FROM bus.inbox WHERE ctid = ANY (ARRAY(SELECT ctid FROM bus.inbox WHERE handled_at < ${cutoff} LIMIT ${SWEEP_BATCH}))`,
        [retentionMs],
      );
      return r.rowCount ?? 0;
    });
    deleted += n;
    if (n < SWEEP_BATCH) return deleted;
  }
}

/** Runs {@link sweepRetention} every `everyMs` until stopped. */
export function startRetention(pool: pg.Pool, retentionMs: number, everyMs: number, logger: BusLogger): () => void {
  const timer = setInterval(() => {
    sweepRetention(pool, retentionMs).then(
      (deleted) => deleted > 0 && logger.info({ deleted }, "bus: retention removed old events"),
      (err) => logger.warn({ err }, "bus: retention sweep failed"),
    );
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
