-- Where callbacks can go: named test environments and exactly one production.
CREATE TABLE environments (
  name text PRIMARY KEY,
  base_url text NOT NULL,
  production boolean NOT NULL DEFAULT false,
  description text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX environments_one_production ON environments (production) WHERE production;

-- Dispatch rules; `spec` is the RuleSpec JSON, `revision` counts this rule's changes.
CREATE TABLE rules (
  name text PRIMARY KEY,
  spec jsonb NOT NULL,
  enabled boolean NOT NULL DEFAULT true,
  revision integer NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every saved revision of every rule, deletions included (spec NULL), for history and rollback.
CREATE TABLE rule_revisions (
  name text NOT NULL,
  revision integer NOT NULL,
  spec jsonb,
  actor text NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, revision)
);

-- One row: bumped by every rule or environment change; replicas and agents poll it.
CREATE TABLE rule_set_version (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  version bigint NOT NULL
);
INSERT INTO rule_set_version (version) VALUES (1);

-- The record of business objects created in test environments (Redis holds the hot copy when configured).
CREATE TABLE registrations (
  rule text NOT NULL,
  object_id text NOT NULL,
  env text NOT NULL,
  registered_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (rule, object_id)
);
CREATE INDEX registrations_expires_at ON registrations (expires_at);

-- Every routing decision: which rule, which id, where it went, how it ended.
CREATE TABLE decisions (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL,
  request_id text NOT NULL,
  method text NOT NULL,
  path text NOT NULL,
  rule text,
  object_id text,
  target_env text,
  reason text NOT NULL,
  detail text,
  status integer NOT NULL,
  latency_ms double precision NOT NULL,
  error text
);
CREATE INDEX decisions_at ON decisions (at DESC);
CREATE INDEX decisions_object ON decisions (rule, object_id, at DESC);
