-- Claims take due deliveries environment by environment, so one environment that never answers cannot
-- hold every slot while the others' deliveries wait: the environments with something pending are found
-- by skipping through this index (one seek each), and each one's oldest due deliveries are read from it.
CREATE INDEX async_deliveries_env_due ON async_deliveries (env, next_attempt_at) WHERE state = 'pending';
-- The deliveries in flight (leased), counted per environment against its share of the slots.
CREATE INDEX async_deliveries_env_leased ON async_deliveries (env) WHERE state = 'pending' AND leased_by IS NOT NULL;
-- Claims no longer read due deliveries across environments in one order; left, this index drew the
-- planner into scanning a whole backlog for another environment's few rows.
DROP INDEX async_deliveries_due;
