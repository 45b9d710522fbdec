-- Foreign key leads.owner_id -> users.id, step 1 of 2: add it NOT VALID.
-- That takes a brief lock and checks only rows written from now on; the
-- existing rows are checked by 0010 in a separate transaction, so the lock is
-- not held during the scan. ON DELETE SET NULL: a departing user's leads
-- become unassigned rather than deleted.
-- safe-migrate: lock-timeout=5s

ALTER TABLE leads
    ADD CONSTRAINT leads_owner_id_fkey FOREIGN KEY (owner_id)
    REFERENCES users (id) ON DELETE SET NULL NOT VALID;

-- safe-migrate: down
ALTER TABLE leads DROP CONSTRAINT IF EXISTS leads_owner_id_fkey;
