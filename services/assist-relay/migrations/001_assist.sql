-- Assist sessions: one per "Request remote assistance" on an operator's page.
CREATE TABLE sessions (
  id uuid PRIMARY KEY,
  status text NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'active', 'ended')),
  origin text NOT NULL,
  page_url text NOT NULL DEFAULT '',
  -- SHA-256 of the widget's session token (binds the widget socket to its session).
  widget_token_hash text NOT NULL,
  developer text,
  report_id uuid,
  opened_at timestamptz NOT NULL DEFAULT now(),
  connected_at timestamptz,
  ended_at timestamptz,
  ended_by text
);
CREATE INDEX sessions_opened_at ON sessions (opened_at DESC);

-- Connection keys: only a hash is stored; `lookup` is the public first part that finds the session.
CREATE TABLE connection_keys (
  lookup text PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  secret_hash bytea NOT NULL,
  expires_at timestamptz NOT NULL,
  failed_attempts int NOT NULL DEFAULT 0,
  -- 'pending', 'used', 'burned' (too many wrong attempts), 'replaced'.
  state text NOT NULL DEFAULT 'pending',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connection_keys_session ON connection_keys (session_id);

-- Short-lived single-use tickets that let a signed-in developer's browser open its WebSocket.
CREATE TABLE developer_tickets (
  ticket_hash text PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  developer text NOT NULL,
  role text NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);

-- Who watched, when and for how long.
CREATE TABLE watches (
  id bigserial PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  developer text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  ended_at timestamptz
);
CREATE INDEX watches_session ON watches (session_id);

-- Who held remote control, from the operator's consent to its end.
CREATE TABLE control_grants (
  id bigserial PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  developer text NOT NULL,
  granted_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  -- 'operator', 'developer-left', 'session-ended'.
  revoked_by text
);
CREATE INDEX control_grants_session ON control_grants (session_id);

-- The session's stream (rrweb events, console lines, network calls) for replay, kept for a configurable time.
CREATE TABLE recording_events (
  id bigserial PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  kind text NOT NULL CHECK (kind IN ('rrweb', 'console', 'network')),
  payload jsonb NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recording_events_session ON recording_events (session_id, id);
CREATE INDEX recording_events_received_at ON recording_events (received_at);

-- Refusals on the sockets and key redemption (bad keys, oversize or malformed messages, control without grant).
CREATE TABLE refusals (
  id bigserial PRIMARY KEY,
  session_id uuid,
  actor text NOT NULL,
  reason text NOT NULL,
  detail text NOT NULL DEFAULT '',
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refusals_session ON refusals (session_id);

-- Problem reports (the problem-report channel).
CREATE TABLE reports (
  id uuid PRIMARY KEY,
  reporter text NOT NULL,
  contact text NOT NULL DEFAULT '',
  customer_ref text NOT NULL DEFAULT '',
  category text NOT NULL CHECK (category IN ('data', 'program', 'consultation', 'other')),
  description text NOT NULL,
  status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'in_progress', 'resolved', 'closed')),
  -- SHA-256 of the token the reporter keeps to follow the report.
  reporter_token_hash text NOT NULL,
  session_id uuid REFERENCES sessions (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  first_response_at timestamptz,
  resolved_at timestamptz
);
CREATE INDEX reports_created_at ON reports (created_at);

CREATE TABLE report_attachments (
  id bigserial PRIMARY KEY,
  report_id uuid NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
  -- 'snapshot' (an rrweb full snapshot, JSON) or 'image'.
  kind text NOT NULL CHECK (kind IN ('snapshot', 'image')),
  name text NOT NULL,
  content_type text NOT NULL,
  content bytea NOT NULL
);
CREATE INDEX report_attachments_report ON report_attachments (report_id);

-- Handling history: status changes and comments; comments may be shown to the reporter.
CREATE TABLE report_history (
  id bigserial PRIMARY KEY,
  report_id uuid NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
  actor text NOT NULL,
  from_status text,
  to_status text,
  comment text NOT NULL DEFAULT '',
  visible_to_reporter boolean NOT NULL DEFAULT true,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX report_history_report ON report_history (report_id, id);
