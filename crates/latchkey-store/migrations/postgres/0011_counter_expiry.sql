-- When a failure counter below its hard cap may be forgotten and purged (Unix microseconds);
-- NULL: kept (at the cap, until a reset). Counters for names nobody uses no longer pile up.
ALTER TABLE failure_counters ADD COLUMN expires_at BIGINT;
