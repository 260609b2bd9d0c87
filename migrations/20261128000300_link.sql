-- The edge–control link: snapshots are distributed through the database so
-- every control replica can serve edges, while one replica publishes.

-- The signed bytes of each published snapshot (full or delta). Replicas that
-- do not publish relay these to their edges.
ALTER TABLE snapshots ADD COLUMN body bytea;

-- A deleted license has no row left to read its key hash from: the delete
-- writes it into its outbox row so the delta can remove it from edges.
ALTER TABLE snapshot_outbox ADD COLUMN key_hash bytea;

ALTER TABLE edges ADD COLUMN applied_at timestamptz;

-- Wakes the publisher as soon as a change commits (NOTIFY is delivered at
-- commit), so a revocation reaches edges in milliseconds, not a poll period.
CREATE FUNCTION latchkey_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER snapshot_outbox_notify AFTER INSERT ON snapshot_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION latchkey_outbox_notify();
