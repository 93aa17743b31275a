-- When the session's widget was last heard from (connection or frame), for ASSIST_IDLE_TIMEOUT_SECONDS.
-- Replicas holding widget sockets advance it in batches (one UPDATE per replica per interval).
ALTER TABLE sessions ADD COLUMN last_widget_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX sessions_open_idle ON sessions (last_widget_at) WHERE status <> 'ended';
