import type { Queryable } from "@opsplane/store";

/**
 * Makes a consumer idempotent. Call it inside the transaction that applies the
 * event's effects: it returns true the first time `group` sees `eventId` and false
 * for a redelivery, and because its row commits or rolls back with those effects,
 * "handled" and "recorded as handled" can never disagree.
 *
 *   await withTransaction(pool, async (tx) => {
 *     if (!(await markHandledOnce(tx, "billing", event.id))) return;
 *     await tx.query("UPDATE ...");
 *   });
 */
export async function markHandledOnce(tx: Queryable, group: string, eventId: string): Promise<boolean> {
  const r = await tx.query("INSERT INTO bus.inbox (group_name, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", [group, eventId]);
  return r.rowCount === 1;
}
