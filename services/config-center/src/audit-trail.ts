import type { Pool } from "@opsplane/store";

export interface AuditEntryView {
  id: number;
  at: string;
  actor: string;
  role: string;
  action: string;
  target: string;
  before: unknown;
  after: unknown;
  requestId: string;
  outcome: string;
}

/** Reads this service's audit trail (the platform's `audit_log`), newest first. */
export async function listAudit(pool: Pool, targetPrefix: string | undefined, limit = 100): Promise<AuditEntryView[]> {
  const { rows } = await pool.query<{
    id: number;
    at: Date;
    actor: string;
    role: string | null;
    action: string;
    target: string;
    before: unknown;
    after: unknown;
    request_id: string | null;
    outcome: string;
  }>(
    "SELECT id, at, actor, role, action, target, before, after, request_id, outcome FROM audit_log WHERE ($1::text IS NULL OR starts_with(target, $1)) ORDER BY id DESC LIMIT $2",
    [targetPrefix || null, Math.min(limit || 100, 1000)],
  );
  return rows.map((r) => ({
    id: r.id,
    at: r.at.toISOString(),
    actor: r.actor,
    role: r.role ?? "",
    action: r.action,
    target: r.target,
    before: r.before,
    after: r.after,
    requestId: r.request_id ?? "",
    outcome: r.outcome,
  }));
}
