-- Foreign key leads.owner_id -> users.id, step 2 of 2: unassign leads whose
-- owner does not exist, then validate the constraint 0009 added NOT VALID.
-- VALIDATE only takes a SHARE UPDATE EXCLUSIVE lock on leads: reads and writes
-- go on while it scans. No new bad owner_id can appear meanwhile: the NOT
-- VALID constraint already checks every new row. statement-timeout=0 lifts any
-- configured statement timeout for the scan.
-- safe-migrate: statement-timeout=0

UPDATE leads
SET owner_id = NULL
WHERE owner_id IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM users WHERE users.id = leads.owner_id);

ALTER TABLE leads VALIDATE CONSTRAINT leads_owner_id_fkey;
