-- One row per scan; results and the seed's tables hang off it and go with it.
CREATE TABLE scans (
  id uuid PRIMARY KEY,
  status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
  source text NOT NULL CHECK (source IN ('upload', 'url', 'event')),
  artifact_name text NOT NULL,
  artifact_url text,
  sha256 text,
  bases text[] NOT NULL,
  code_pattern text,
  system text,
  event_id text UNIQUE,
  stats jsonb,
  problems jsonb NOT NULL DEFAULT '[]',
  error text,
  created_by text,
  created_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX scans_created_at ON scans (created_at DESC);

-- The seed's _container table: the artifact and every nested archive.
CREATE TABLE containers (
  scan_id uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
  id integer NOT NULL,
  parent_id integer,
  name text NOT NULL,
  type text NOT NULL,
  PRIMARY KEY (scan_id, id)
);

-- The seed's _namespace table: packages.
CREATE TABLE namespaces (
  scan_id uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
  id integer NOT NULL,
  name text NOT NULL,
  PRIMARY KEY (scan_id, id),
  UNIQUE (scan_id, name)
);

-- The seed's _clazz table: super class and interfaces are the class's dependencies by inheritance.
CREATE TABLE classes (
  scan_id uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
  id integer NOT NULL,
  container_id integer NOT NULL,
  namespace_id integer NOT NULL,
  name text NOT NULL,
  super_class text,
  interfaces text[] NOT NULL,
  kind text NOT NULL,
  visibility text NOT NULL,
  major_version integer NOT NULL,
  entry text NOT NULL,
  PRIMARY KEY (scan_id, id)
);
CREATE INDEX classes_by_super ON classes (scan_id, super_class);
CREATE INDEX classes_by_name ON classes (scan_id, name);

-- The seed's _method table: one row per method with its instruction length.
CREATE TABLE methods (
  scan_id uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
  id integer NOT NULL,
  class_id integer NOT NULL,
  name text NOT NULL,
  descriptor text NOT NULL,
  length integer NOT NULL,
  PRIMARY KEY (scan_id, id)
);

-- The seed's inv_clazz/inv_method: every call a method makes.
CREATE TABLE invocations (
  scan_id uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
  method_id integer NOT NULL,
  op text NOT NULL,
  inv_class text NOT NULL,
  inv_method text NOT NULL,
  inv_descriptor text NOT NULL,
  line integer
);
CREATE INDEX invocations_by_target ON invocations (scan_id, inv_class, inv_method);

CREATE TABLE error_codes (
  scan_id uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
  code text NOT NULL,
  message text,
  message_kind text NOT NULL,
  exception_class text NOT NULL,
  family text NOT NULL,
  locations jsonb NOT NULL
);
CREATE INDEX error_codes_by_code ON error_codes (scan_id, code);

CREATE TABLE violations (
  scan_id uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
  code text NOT NULL,
  rule text NOT NULL,
  message text NOT NULL,
  exception_class text NOT NULL,
  locations jsonb NOT NULL
);
CREATE INDEX violations_by_scan ON violations (scan_id);

-- The compliant registry (seed claims 5 and 6): codes that passed validation, kept across scans.
CREATE TABLE registry (
  code text NOT NULL,
  message text NOT NULL,
  exception_family text NOT NULL,
  first_scan_id uuid,
  added_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (code, message)
);
