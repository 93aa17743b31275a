-- Each callback as it was forwarded, kept for CALLBACK_RETENTION_DAYS so it can be shown and replayed:
-- the request target (path and query as received), the end-to-end headers as sent (a JSON list
-- ["name", "value", …], case and repeats kept) and the exact body bytes. `body` is NULL when the body
-- was larger than CALLBACK_STORE_MAX_BYTES or not read whole; `body_size` is NULL when not read whole.
CREATE TABLE callback_payloads (
  decision_id bigint PRIMARY KEY,
  at timestamptz NOT NULL,
  target text NOT NULL,
  headers jsonb NOT NULL,
  body bytea,
  body_size integer
);
CREATE INDEX callback_payloads_at ON callback_payloads (at);

-- Every replay of a stored callback: who asked, where it went, how it ended (status NULL: no answer recorded).
CREATE TABLE callback_replays (
  id bigserial PRIMARY KEY,
  decision_id bigint NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  target_env text NOT NULL,
  actor text NOT NULL,
  request_id text NOT NULL,
  status integer,
  latency_ms double precision,
  error text
);
CREATE INDEX callback_replays_decision ON callback_replays (decision_id, id);
CREATE INDEX callback_replays_at ON callback_replays (at);

-- Searching decisions by the request id a third party quotes, or by business-object id alone.
CREATE INDEX decisions_request_id ON decisions (request_id);
CREATE INDEX decisions_object_id ON decisions (object_id);
