-- When the lease on the current attempt began: an attempt its replica never finished (it stopped,
-- or lost the lease) is recorded, by the replica that finds it, at the time it was made.
ALTER TABLE async_deliveries ADD COLUMN leased_at timestamptz;
