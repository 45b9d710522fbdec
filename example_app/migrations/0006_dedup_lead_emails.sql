-- Make lead e-mails unique: merge duplicates first, then add the unique index.
-- Dedup and index are in one transaction, and the table is locked against
-- writers first (reads go on), so no duplicate can sneak in between the
-- DELETE and the index build. The lock waits at most 5 s (not the 2 s
-- default); if it cannot be had, the attempt is rolled back and retried.
-- On a big table, dedup here and build the index CONCURRENTLY in a
-- no-transaction migration instead (see 0008).
-- safe-migrate: lock-timeout=5s

LOCK TABLE leads IN SHARE ROW EXCLUSIVE MODE;

-- Keep the oldest lead of each e-mail; move the duplicates' notes onto it.
UPDATE notes
SET lead_id = dup.keep_id
FROM (
    SELECT id, min(id) OVER (PARTITION BY email) AS keep_id
    FROM leads
) AS dup
WHERE notes.lead_id = dup.id AND dup.id <> dup.keep_id;

DELETE FROM leads a USING leads b WHERE a.email = b.email AND a.id > b.id;

CREATE UNIQUE INDEX leads_email_key ON leads (email);

-- safe-migrate: down
DROP INDEX IF EXISTS leads_email_key;
