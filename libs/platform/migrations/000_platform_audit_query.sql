-- The audit query (GET /_audit/v1/entries, ops.v1.AuditService) filters by actor, action or target
-- and pages newest first by id.
CREATE INDEX audit_log_actor_id ON audit_log (actor, id DESC);
CREATE INDEX audit_log_action_id ON audit_log (action, id DESC);
CREATE INDEX audit_log_target_id ON audit_log (target, id DESC);
DROP INDEX audit_log_target;
