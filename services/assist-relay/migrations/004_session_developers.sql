-- The developers a session admits: each redeemed its key while it was valid, and may watch and
-- re-join (a new ticket for the same API key) until the session ends. One of them controls at a time.
CREATE TABLE session_developers (
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  developer text NOT NULL,
  joined_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (session_id, developer)
);
INSERT INTO session_developers (session_id, developer, joined_at)
  SELECT id, developer, COALESCE(connected_at, opened_at) FROM sessions WHERE developer IS NOT NULL;
