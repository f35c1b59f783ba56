-- keyshift store schema v1 (PostgreSQL).
-- Integers are BIGINT (timestamps in milliseconds since the epoch); JSON is TEXT.
-- Values are only ever stored encrypted (versions.nonce, versions.ciphertext).

CREATE TABLE secrets (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL,
    policy      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    -- the seq of the latest event of this name
    event_seq   BIGINT  NOT NULL
);

CREATE TABLE versions (
    secret_id   BIGINT  NOT NULL REFERENCES secrets (id),
    number      BIGINT  NOT NULL,
    state       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    rotation    TEXT,
    key_id      TEXT    NOT NULL,
    nonce       BYTEA   NOT NULL,
    ciphertext  BYTEA   NOT NULL,
    PRIMARY KEY (secret_id, number)
);

-- one version per rotation (idempotent Generate)
CREATE UNIQUE INDEX versions_by_rotation ON versions (secret_id, rotation) WHERE rotation IS NOT NULL;

CREATE TABLE labels (
    secret_id   BIGINT  NOT NULL,
    label       TEXT    NOT NULL,
    number      BIGINT  NOT NULL,
    PRIMARY KEY (secret_id, label),
    FOREIGN KEY (secret_id, number) REFERENCES versions (secret_id, number)
);

CREATE TABLE rotations (
    ord         BIGSERIAL PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    secret      TEXT    NOT NULL,
    active      BIGINT  NOT NULL,
    state       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- invariant I3: at most one rotation per secret has not ended
CREATE UNIQUE INDEX rotations_one_active ON rotations (secret) WHERE active = 1;
CREATE INDEX rotations_by_secret ON rotations (secret, created_at);

CREATE TABLE events (
    -- assigned from counters('event') while holding its row lock: commit order
    id          BIGINT  PRIMARY KEY,
    secret      TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    version     BIGINT,
    labels      TEXT    NOT NULL,
    at          BIGINT  NOT NULL
);

CREATE UNIQUE INDEX events_by_secret ON events (secret, seq);

CREATE TABLE counters (
    name        TEXT    PRIMARY KEY,
    value       BIGINT  NOT NULL
);

INSERT INTO counters (name, value) VALUES ('event', 0);

CREATE TABLE audit (
    id          BIGSERIAL PRIMARY KEY,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    secret      TEXT,
    version     BIGINT,
    rotation    TEXT,
    outcome     TEXT    NOT NULL,
    detail      TEXT,
    at          BIGINT  NOT NULL
);

CREATE INDEX audit_by_secret ON audit (secret, id);

-- the audit log is append-only
CREATE FUNCTION keyshift_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION keyshift_audit_append_only();

CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION keyshift_audit_append_only();

CREATE TABLE tokens (
    id          TEXT    PRIMARY KEY,
    secret_hash BYTEA   NOT NULL,
    description TEXT    NOT NULL,
    grants      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- a known plaintext encrypted under the master key the store was initialised with
CREATE TABLE key_check (
    id          BIGINT  PRIMARY KEY CHECK (id = 1),
    key_id      TEXT    NOT NULL,
    nonce       BYTEA   NOT NULL,
    ciphertext  BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL
);
