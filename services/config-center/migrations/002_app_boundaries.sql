-- Security boundaries between apps and environments (issue 13 follow-up).

-- The environments an app's credentials may act for. Null until an admin lists them: then
-- DEFAULT_APP_ENVIRONMENTS apply, which never include production unless an operator says so.
ALTER TABLE apps ADD COLUMN environments text[];

-- The apps that may draw numbers from a sequence; none until an admin lists them.
ALTER TABLE sequences ADD COLUMN apps text[] NOT NULL DEFAULT '{}';

-- The app a lock belongs to: the first that acquired it. Other apps may neither take nor release it.
ALTER TABLE locks ADD COLUMN app_id text;
UPDATE locks SET app_id = split_part(holder, '/', 1) WHERE holder IS NOT NULL;
