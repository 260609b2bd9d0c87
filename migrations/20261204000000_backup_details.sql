-- Backups made with pg_dump: what each one holds, so that a restore can be
-- verified against it, and the scheduled slot that made it (unique, so that
-- of several control replicas exactly one backs up per slot).
ALTER TABLE backups
    ADD COLUMN origin        text NOT NULL DEFAULT 'manual' CHECK (origin IN ('manual', 'scheduled')),
    ADD COLUMN scheduled_for timestamptz UNIQUE,
    ADD COLUMN sha256        text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN duration_ms   bigint,
    ADD COLUMN schema_version bigint,
    ADD COLUMN row_counts    jsonb;

CREATE INDEX backups_started_at ON backups (started_at DESC);
