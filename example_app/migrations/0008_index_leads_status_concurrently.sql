-- Index leads by status (the board loads one column at a time) without
-- blocking writes: CREATE INDEX CONCURRENTLY cannot run inside a transaction,
-- hence no-transaction. Such a migration may be retried after a dropped
-- connection, so each statement must be safe to run twice: IF NOT EXISTS.
-- (An interrupted CONCURRENTLY build leaves an INVALID index, which IF NOT
-- EXISTS alone would keep; the runner drops it before the retry.)
-- safe-migrate: no-transaction

CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_status_id_idx ON leads (status_id);

-- safe-migrate: down
DROP INDEX CONCURRENTLY IF EXISTS leads_status_id_idx;
