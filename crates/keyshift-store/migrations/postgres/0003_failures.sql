-- keyshift store schema v3: failed uses reported by consumers, per version,
-- the signal a canary rotation rolls back on. Same shape as consumers (0002):
-- keyed by secrets.id, deleted with the secret by delete_secret, no foreign
-- key, pruned by last_at.

CREATE TABLE failure_reports (
    secret_id   BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    consumer_id TEXT    NOT NULL,
    count       BIGINT NOT NULL,
    first_at    BIGINT NOT NULL,
    last_at     BIGINT NOT NULL,
    PRIMARY KEY (secret_id, version, consumer_id)
);
