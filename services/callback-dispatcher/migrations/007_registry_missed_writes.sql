-- How many registrations replicas wrote to the record but could not copy to Redis (a replica cut off
-- from it). Every replica reads the count with its warm check; when it has grown, the replica deletes
-- the warm marker, so no replica trusts a miss in Redis until a warm has copied the record again.
CREATE TABLE registry_missed_writes (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  count bigint NOT NULL DEFAULT 0
);
INSERT INTO registry_missed_writes DEFAULT VALUES;
