-- keyshift store schema v2 (PostgreSQL): consumers and usage, the overlap gate's signals.
-- Written by every consumer every few seconds, so kept lean:
--  * keyed by secrets.id, deleted with the secret by delete_secret;
--  * no foreign key to secrets: its check would share-lock the secret row
--    for each new row. A row that races a delete_secret refers to
--    an id never reused (BIGSERIAL) and is removed by prune;
--  * no index on consumers.last_seen: every heartbeat moves it (unindexed,
--    the update stays HOT), and prune is occasional housekeeping that may scan.

CREATE TABLE consumers (
    secret_id   BIGINT  NOT NULL,
    consumer_id TEXT    NOT NULL,
    -- the version it holds (NULL: none yet)
    version     BIGINT,
    host        TEXT,
    process     TEXT,
    first_seen  BIGINT  NOT NULL,
    last_seen   BIGINT  NOT NULL,
    PRIMARY KEY (secret_id, consumer_id)
);

-- uses of one version in one one-minute window (window_start: ms, a multiple of 60000)
CREATE TABLE usage_windows (
    secret_id    BIGINT  NOT NULL,
    version      BIGINT  NOT NULL,
    window_start BIGINT  NOT NULL,
    count        BIGINT  NOT NULL,
    PRIMARY KEY (secret_id, version, window_start)
);

-- prune by age; written once per (secret, version, minute), not on every report
CREATE INDEX usage_windows_by_start ON usage_windows (window_start);
