-- keyshift store schema v2 (SQLite): consumers and usage, the overlap gate's signals.
-- Written by every consumer every few seconds, so kept lean:
--  * keyed by secrets.id, deleted with the secret by delete_secret;
--  * no foreign key to secrets: on PostgreSQL its check would share-lock the
--    secret row for each new row. A row that races a delete_secret refers to
--    an id never reused (AUTOINCREMENT) and is removed by prune;
--  * no index on consumers.last_seen: every heartbeat moves it, and prune is
--    occasional housekeeping that may scan.

CREATE TABLE consumers (
    secret_id   INTEGER NOT NULL,
    consumer_id TEXT    NOT NULL,
    -- the version it holds (NULL: none yet)
    version     INTEGER,
    host        TEXT,
    process     TEXT,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (secret_id, consumer_id)
);

-- uses of one version in one one-minute window (window_start: ms, a multiple of 60000)
CREATE TABLE usage_windows (
    secret_id    INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (secret_id, version, window_start)
);

-- prune by age; written once per (secret, version, minute), not on every report
CREATE INDEX usage_windows_by_start ON usage_windows (window_start);
