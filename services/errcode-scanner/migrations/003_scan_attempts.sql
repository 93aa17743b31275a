-- How many times a replica started running the scan. A scan whose replica died while running it is
-- taken over and run again, but only a bounded number of times: an artifact that kills every
-- replica that scans it must not make the service crash at every start-up.
ALTER TABLE scans ADD COLUMN attempts integer NOT NULL DEFAULT 0;
