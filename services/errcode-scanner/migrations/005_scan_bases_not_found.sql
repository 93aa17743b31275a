-- Bases a succeeded scan did not find in its artifact while it found others (the CLI's warning), kept
-- with the scan so the service tells it as the CLI does: a misspelt base beside a right one is not silent.
ALTER TABLE scans ADD COLUMN bases_not_found text[] NOT NULL DEFAULT '{}';
