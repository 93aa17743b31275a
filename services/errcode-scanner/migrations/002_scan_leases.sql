-- Which replica holds a queued or running scan, and until when without renewing: a replica renews
-- the leases of the scans it holds while it runs them, and takes over only scans whose lease has
-- expired (their replica died or lost the database). Rows from before this migration have no lease
-- and are taken over like expired ones.
ALTER TABLE scans ADD COLUMN owner text, ADD COLUMN lease_expires_at timestamptz;
CREATE INDEX scans_unfinished_by_lease ON scans (lease_expires_at) WHERE status IN ('queued', 'running');
