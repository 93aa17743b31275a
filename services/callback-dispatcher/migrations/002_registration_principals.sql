-- Who registered each business object (e.g. app:agent-sit, key:ops). Rows registered before this
-- migration keep routing and read 'unrecorded', as do those written by replicas of the previous
-- version during a rolling upgrade (they do not name the column); this version always names it.
ALTER TABLE registrations ADD COLUMN registered_by text NOT NULL DEFAULT 'unrecorded';

-- Ids each test environment may claim: {"<rule name>" | "*": "<RE2 pattern the whole id must match>"}.
-- Existing environments start with none, which means any id, as before.
ALTER TABLE environments ADD COLUMN id_patterns jsonb NOT NULL DEFAULT '{}';
