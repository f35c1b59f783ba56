-- keyshift store schema v3: failed uses reported by consumers, per version,
-- the signal a canary rotation rolls back on. Same shape as consumers (0002):
-- keyed by secrets.id, deleted with the secret by delete_secret, no foreign
-- key, pruned by last_at.

CREATE TABLE failure_reports (
    secret_id   INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    consumer_id TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    first_at    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    PRIMARY KEY (secret_id, version, consumer_id)
);
