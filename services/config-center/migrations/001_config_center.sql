-- config-center: apps and their instances, versioned parameters and rules, public resources,
-- locks, sequences and the resources apps report.

-- One global version: every change takes the next number while holding this row, so versions
-- commit in order and "everything after version N" is a plain range scan.
CREATE TABLE version_counter (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  version bigint NOT NULL
);
INSERT INTO version_counter (version) VALUES (0);

CREATE TABLE settings (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  -- Seed step 5: an app without a record may register (its record is created then).
  admit_unknown_apps boolean NOT NULL DEFAULT true,
  revision bigint NOT NULL DEFAULT 0
);
INSERT INTO settings DEFAULT VALUES;

CREATE TABLE apps (
  app_id text PRIMARY KEY,
  system_domain text NOT NULL DEFAULT '',
  description text NOT NULL DEFAULT '',
  enabled boolean NOT NULL DEFAULT true,
  -- SHA-256 of the app's secret; null until one is set (by an admin or at first registration).
  secret_hash bytea,
  last_active_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by text NOT NULL,
  revision bigint NOT NULL DEFAULT 1
);

-- Start-up tokens (seed step 2), stored as hashes.
CREATE TABLE app_tokens (
  token_hash bytea PRIMARY KEY,
  app_id text NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
  issued_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX app_tokens_expiry ON app_tokens (expires_at);

CREATE TABLE instances (
  id uuid PRIMARY KEY,
  app_id text NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
  env text NOT NULL,
  host_name text NOT NULL,
  ip text NOT NULL,
  service_port integer NOT NULL,
  sdk_port integer NOT NULL,
  start_params jsonb NOT NULL DEFAULT '{}',
  labels jsonb NOT NULL DEFAULT '{}',
  pod_name text NOT NULL DEFAULT '',
  pod_namespace text NOT NULL DEFAULT '',
  app_version text NOT NULL DEFAULT '',
  state text NOT NULL DEFAULT 'registered' CHECK (state IN ('registered', 'online', 'offline')),
  registered_at timestamptz NOT NULL DEFAULT now(),
  connected_at timestamptz,
  last_heartbeat_at timestamptz,
  offline_at timestamptz,
  online_ms bigint NOT NULL DEFAULT 0,
  acked_version bigint NOT NULL DEFAULT 0,
  -- The replica and connection holding the instance's socket: a late close on a replica the
  -- instance already left must not mark the new connection offline.
  replica text,
  connection_id uuid
);
CREATE INDEX instances_app ON instances (app_id, registered_at DESC);
CREATE INDEX instances_live ON instances (state, last_heartbeat_at) WHERE state <> 'offline';

-- Business and technical parameters and governance rules. Scope: app ('' = shared by every app)
-- and env ('' = every environment); an instance sees the most specific of each key.
CREATE TABLE items (
  kind text NOT NULL CHECK (kind IN ('business', 'technical', 'governance')),
  app text NOT NULL,
  env text NOT NULL,
  key text NOT NULL,
  value jsonb NOT NULL,
  schema jsonb,
  category text NOT NULL DEFAULT '',
  startup boolean NOT NULL DEFAULT false,
  description text NOT NULL DEFAULT '',
  -- Public resources the value references ("middleware/loan-db").
  refs text[] NOT NULL DEFAULT '{}',
  revision bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text NOT NULL,
  gray_value jsonb,
  gray_selector jsonb,
  gray_revision bigint,
  gray_started_at timestamptz,
  gray_started_by text,
  PRIMARY KEY (kind, app, env, key)
);
CREATE INDEX items_key ON items (kind, key);
CREATE INDEX items_refs ON items USING gin (refs);

-- The change log: one row per item changed. `value` is what the item held after the change (null
-- once deleted); gray changes carry their selector. A resource change records one "ref-changed"
-- row, all with the same version, for every technical item whose resolved value it changed.
CREATE TABLE changes (
  id bigserial PRIMARY KEY,
  version bigint NOT NULL,
  kind text NOT NULL,
  app text NOT NULL,
  env text NOT NULL,
  key text NOT NULL,
  action text NOT NULL,
  value jsonb,
  schema jsonb,
  category text NOT NULL DEFAULT '',
  startup boolean NOT NULL DEFAULT false,
  description text NOT NULL DEFAULT '',
  gray_selector jsonb,
  actor text NOT NULL,
  comment text NOT NULL DEFAULT '',
  request_id text,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX changes_version ON changes (version);
CREATE INDEX changes_item ON changes (kind, app, env, key, version DESC);

-- Public resources: middleware and public services. Secret fields are AES-256-GCM sealed, each
-- with the id of the key that sealed it.
CREATE TABLE resources (
  kind text NOT NULL CHECK (kind IN ('middleware', 'service')),
  name text NOT NULL,
  type text NOT NULL,
  config jsonb NOT NULL DEFAULT '{}',
  secrets jsonb NOT NULL DEFAULT '{}',
  description text NOT NULL DEFAULT '',
  refs text[] NOT NULL DEFAULT '{}',
  revision bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text NOT NULL,
  PRIMARY KEY (kind, name)
);
CREATE INDEX resources_refs ON resources USING gin (refs);

CREATE TABLE locks (
  name text PRIMARY KEY,
  holder text,
  acquired_at timestamptz,
  expires_at timestamptz,
  fencing_token bigint NOT NULL DEFAULT 0
);

CREATE TABLE sequences (
  name text PRIMARY KEY,
  pattern text NOT NULL,
  current bigint NOT NULL,
  cache_size integer NOT NULL,
  reset text NOT NULL CHECK (reset IN ('never', 'daily', 'monthly')),
  cycle boolean NOT NULL,
  min bigint NOT NULL,
  max bigint NOT NULL,
  period text NOT NULL DEFAULT '',
  time_zone text NOT NULL,
  description text NOT NULL DEFAULT '',
  revision bigint NOT NULL DEFAULT 1
);

-- Interfaces, queues and jobs as instances report them, per app version (seed step 11).
CREATE TABLE app_resources (
  app_id text NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
  app_version text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('interface', 'queue', 'job')),
  code text NOT NULL,
  spec jsonb NOT NULL,
  instance_id uuid NOT NULL,
  reported_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (app_id, app_version, kind, code)
);
CREATE INDEX app_resources_latest ON app_resources (app_id, reported_at DESC);
