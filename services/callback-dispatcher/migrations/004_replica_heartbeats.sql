-- Every running replica, with the registry it routes from: a replica without Redis routes only the
-- registrations it received itself, which is right only when it runs alone on this database. Each
-- replica refreshes its row every REPLICA_HEARTBEAT_MS and deletes it when it stops.
CREATE TABLE replicas (
  id text PRIMARY KEY,
  host text NOT NULL,
  registry text NOT NULL CHECK (registry IN ('redis', 'memory')),
  started_at timestamptz NOT NULL DEFAULT now(),
  seen_at timestamptz NOT NULL DEFAULT now()
);
