-- Asynchronous delivery per environment: NULL answers third parties with the environment's own
-- answer (synchronous, as before); otherwise the template they are answered from at once and the
-- retry policy of the background delivery (see async-delivery-config.ts).
ALTER TABLE environments ADD COLUMN async_delivery jsonb;

-- Callbacks answered from a template and owed to their environment. The id is the callback's
-- decision id. A row is claimed by one replica at a time: `next_attempt_at` moves past the attempt
-- (the lease) and `leased_by` names the replica; a replica that dies leaves the row to be claimed
-- again once the lease is over. The retry policy is copied from the environment when the callback
-- arrives, so changing it later does not strand what is owed.
CREATE TABLE async_deliveries (
  id bigint PRIMARY KEY,
  env text NOT NULL,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
  request_id text NOT NULL,
  method text NOT NULL,
  target text NOT NULL,
  headers jsonb NOT NULL,
  body bytea NOT NULL,
  received_at timestamptz NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL,
  give_up_at timestamptz NOT NULL,
  initial_backoff_ms integer NOT NULL,
  max_backoff_ms integer NOT NULL,
  next_attempt_at timestamptz NOT NULL,
  leased_by text,
  last_status integer,
  last_error text,
  dead_reason text,
  finished_at timestamptz
);
CREATE INDEX async_deliveries_due ON async_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX async_deliveries_env_state ON async_deliveries (env, state);
CREATE INDEX async_deliveries_finished ON async_deliveries (finished_at) WHERE state <> 'pending';

-- Every attempt: which replica, how the environment answered (status NULL: no outcome is known,
-- the replica stopped mid-attempt), how long it took, why it failed.
CREATE TABLE async_delivery_attempts (
  delivery_id bigint NOT NULL REFERENCES async_deliveries (id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  env text NOT NULL,
  replica text NOT NULL,
  status integer,
  duration_ms double precision,
  error text,
  PRIMARY KEY (delivery_id, attempt)
);
