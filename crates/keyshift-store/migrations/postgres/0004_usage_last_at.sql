-- keyshift store schema v4: each usage window records when a report last
-- added to it, so the overlap gate can tell whether a version was used
-- within the last monitoring cycle (finer than the one-minute window).
-- Windows written before this migration read as last used at their start.

ALTER TABLE usage_windows ADD COLUMN last_at BIGINT NOT NULL DEFAULT 0;
UPDATE usage_windows SET last_at = window_start;
