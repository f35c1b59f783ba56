-- keyshift store schema v5: how often each consumer says it sends
-- heartbeats, so it can be counted stale after a number of missed ones
-- (the policy's stale_after_missed). NULL: it did not say (the policy's
-- consumer_stale_after applies).

ALTER TABLE consumers ADD COLUMN heartbeat_interval_ms BIGINT;
