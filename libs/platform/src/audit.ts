import { create } from "@bufbuild/protobuf";
import type { Bus } from "@opsplane/bus";
import { AuditRecordedSchema, toEventData, topics } from "@opsplane/contracts";
import type { Queryable } from "@opsplane/store";
import { createDenialThrottle } from "./audit-denials.js";
import type { Principal } from "./auth.js";
import { actorOf } from "./auth.js";
import type { Logger } from "./logger.js";

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
  /**
   * Records a refused call (outcome "denied") off the request path, throttled per caller, action
   * and target (AUDIT_DENIAL_WINDOW_SECONDS) so that a flood of refusals cannot fill the trail: the
   * first of a window at once, the rest as one row counting them in `after.suppressed`. Never throws;
   * a row that cannot be written is logged.
   */
  denied(entry: Omit<AuditEntry, "outcome">): void;
}

export interface DenialOptions {
  /** Where refusals are written (the service's pool: they belong to no transaction). */
  pool: Queryable;
  log: Logger;
  windowMs: number;
}

/** The service's auditor; `close` writes the refusals still counted, so call it before the pool closes. */
export function createAuditor(service: string, bus: Bus, denials: DenialOptions): Auditor & { close(): Promise<void> } {
  const throttle = createDenialThrottle(async (e) => {
    const after = e.after as Record<string, unknown> | undefined;
    denials.log.warn(
      { audit: true, actor: actorOf(e.principal), action: e.action, target: e.target, reqId: e.requestId, ...after },
      "access denied",
    );
    await auditor
      .record(denials.pool, { ...e, outcome: "denied" })
      .catch((err) => denials.log.error({ err }, "could not record a denied call"));
  }, denials.windowMs);
  const auditor = {
    denied: (e: Omit<AuditEntry, "outcome">) => throttle.denied({ ...e, outcome: "denied" }),
    close: () => throttle.close(),
    async record(q: Queryable, e: AuditEntry) {
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
  return auditor;
}

const json = (v: unknown) => (v === undefined ? null : JSON.stringify(v));
