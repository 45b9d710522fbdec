-- Add the foreign key notes.lead_id -> leads.id (ON DELETE CASCADE): delete the
-- orphan notes first (0004 explains where they come from), or the constraint
-- could never be validated.
-- The table is locked against writers first so no new orphan appears between
-- the DELETE and the constraint. NOT VALID + VALIDATE in one transaction
-- still holds that lock while validating: fine for a small table; for a big
-- one, validate in a migration of its own, as 0009/0010 do.
-- safe-migrate: lock-timeout=5s

LOCK TABLE notes IN SHARE ROW EXCLUSIVE MODE;

DELETE FROM notes WHERE lead_id NOT IN (SELECT id FROM leads);

ALTER TABLE notes
    ADD CONSTRAINT notes_lead_id_fkey FOREIGN KEY (lead_id)
    REFERENCES leads (id) ON DELETE CASCADE NOT VALID;

ALTER TABLE notes VALIDATE CONSTRAINT notes_lead_id_fkey;

-- safe-migrate: down
ALTER TABLE notes DROP CONSTRAINT IF EXISTS notes_lead_id_fkey;
