-- The outbox that is also the log. Rows are read in (txid, seq) order, and only
-- once txid is below the oldest running transaction, so a transaction that took
-- a lower seq but commits later can never be skipped (see README, "Gap safety").
CREATE TABLE events (
  seq bigserial NOT NULL,
  txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  id uuid NOT NULL,
  topic text NOT NULL,
  key text,
  type text NOT NULL,
  source text NOT NULL,
  subject text,
  time timestamptz NOT NULL,
  -- json, not jsonb: kept as written and cheaper to write and read; the log is not queried by content.
  data json,
  traceparent text,
  tracestate text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (txid, seq),
  -- Re-publishing an event id is a no-op, so producers may retry safely.
  UNIQUE (id)
);
CREATE INDEX events_topic_position_idx ON events (topic, txid, seq);
-- Append-only and time-ordered: a BRIN index makes retention sweeps cheap at almost no insert cost.
CREATE INDEX events_created_at_brin ON events USING brin (created_at);

-- Committed position of each consumer group per topic ("*" is the relay's all-topics cursor).
-- claimed_* marks the end of the batch handed to the handler, so a member that takes
-- over after a crash knows which events are redeliveries and how often they were tried.
CREATE TABLE offsets (
  group_name text NOT NULL,
  topic text NOT NULL,
  txid xid8 NOT NULL,
  seq bigint NOT NULL,
  claimed_txid xid8 NOT NULL,
  claimed_seq bigint NOT NULL,
  claims integer NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_name, topic)
);

-- Events a group gave up on after its handler failed maxAttempts times.
CREATE TABLE dead_letters (
  id bigserial PRIMARY KEY,
  group_name text NOT NULL,
  topic text NOT NULL,
  event_id uuid NOT NULL,
  event jsonb NOT NULL,
  error text NOT NULL,
  attempts integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_group_idx ON dead_letters (group_name, topic, created_at);

-- Idempotent consumers: one row per (group, event) handled; see markHandledOnce.
CREATE TABLE inbox (
  group_name text NOT NULL,
  event_id uuid NOT NULL,
  handled_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_name, event_id)
);
CREATE INDEX inbox_handled_at_brin ON inbox USING brin (handled_at);
