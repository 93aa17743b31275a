-- Single-use tickets the operator's page opens its WebSocket with, so the session token never
-- appears in a URL (proxies and access logs keep URLs).
CREATE TABLE widget_tickets (
  ticket_hash text PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);

-- The one widget socket a session has at a time, whichever replica holds it, and until when that
-- replica vouches for it (renewed every ASSIST_HEARTBEAT_SECONDS while the socket answers pings).
ALTER TABLE sessions ADD COLUMN widget_socket text, ADD COLUMN widget_socket_until timestamptz;
