-- What a scan could not check, kept with it as the CLI reports it: why nothing (or nothing under a
-- base) was checked, and each construction site whose code is not statically known. A scan that
-- succeeded without checking anything must not read like one that checked everything.
ALTER TABLE scans ADD COLUMN not_checked text[] NOT NULL DEFAULT '{}', ADD COLUMN dynamic_sites jsonb NOT NULL DEFAULT '[]';
