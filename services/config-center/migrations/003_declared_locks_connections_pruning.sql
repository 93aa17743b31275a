-- Declared locks (issue 13 follow-up): an admin lists the apps that may use a lock name, so no
-- other app can take a name first and keep it. Null: undeclared, the first app to acquire it
-- owns it (app_id).
ALTER TABLE locks ADD COLUMN apps text[];
ALTER TABLE locks ADD COLUMN description text NOT NULL DEFAULT '';
ALTER TABLE locks ADD COLUMN revision bigint NOT NULL DEFAULT 0;

-- Numbers each connection of an instance, in commit order: a newer connection, on whichever
-- replica, closes the older sockets on every replica (4009).
ALTER TABLE instances ADD COLUMN connections bigint NOT NULL DEFAULT 0;

-- History pruning keeps the newest changes of each item and deletes old ones by time.
CREATE INDEX changes_at ON changes (at);
