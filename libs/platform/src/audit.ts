import { create } from "@bufbuild/protobuf";
import type { Bus } from "@opsplane/bus";
import { AuditRecordedSchema, toEventData, topics } from "@opsplane/contracts";
import type { Queryable } from "@opsplane/store";
import type { Principal } from "./auth.js";
import { actorOf } from "./auth.js";

export interface AuditEntry {
  principal: Principal | undefined;
  /** A verb on a resource, e.g. "rule.update". */
  action: string;
  /** Resource type and id, e.g. "rule/42". */
  target: string;
  before?: unknown;
  after?: unknown;
  requestId?: string;
  /** "ok" for a change made, "denied" for a refused call. */
  outcome?: "ok" | "denied";
}

export interface Auditor {
  /**
   * Records the entry with `q`. Pass the transaction that makes the change, so
   * the audit row and its `audit.recorded` event exist exactly when the change does.
   */
  record(q: Queryable, entry: AuditEntry): Promise<void>;
}

export function createAuditor(service: string, bus: Bus): Auditor {
  return {
    async record(q, e) {
      const role = e.principal?.kind === "key" ? e.principal.role : e.principal?.kind === "app" ? "app" : null;
      const actor = actorOf(e.principal);
      const before = json(e.before);
      const after = json(e.after);
      await q.query(
        "INSERT INTO audit_log (actor, role, action, target, before, after, request_id, outcome) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        [actor, role, e.action, e.target, before, after, e.requestId ?? null, e.outcome ?? "ok"],
      );
      const event = create(AuditRecordedSchema, {
        service,
        actor,
        role: role ?? "",
        action: e.action,
        target: e.target,
        beforeJson: before ?? "",
        afterJson: after ?? "",
        requestId: e.requestId ?? "",
      });
      await bus.publish(
        {
          topic: topics.auditRecorded.name,
          type: topics.auditRecorded.type,
          key: e.target || e.action,
          data: toEventData(topics.auditRecorded, event),
        },
        { tx: q },
      );
    },
  };
}

const json = (v: unknown) => (v === undefined ? null : JSON.stringify(v));
