-- keyshift store schema v1 (SQLite).
-- Integers are i64 (timestamps in milliseconds since the epoch); JSON is TEXT.
-- Values are only ever stored encrypted (versions.nonce, versions.ciphertext).

CREATE TABLE secrets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL,
    policy      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    -- the seq of the latest event of this name
    event_seq   INTEGER NOT NULL
);

CREATE TABLE versions (
    secret_id   INTEGER NOT NULL REFERENCES secrets (id),
    number      INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    rotation    TEXT,
    key_id      TEXT    NOT NULL,
    nonce       BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    PRIMARY KEY (secret_id, number)
);

-- one version per rotation (idempotent Generate)
CREATE UNIQUE INDEX versions_by_rotation ON versions (secret_id, rotation) WHERE rotation IS NOT NULL;

CREATE TABLE labels (
    secret_id   INTEGER NOT NULL,
    label       TEXT    NOT NULL,
    number      INTEGER NOT NULL,
    PRIMARY KEY (secret_id, label),
    FOREIGN KEY (secret_id, number) REFERENCES versions (secret_id, number)
);

CREATE TABLE rotations (
    ord         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    secret      TEXT    NOT NULL,
    active      INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- invariant I3: at most one rotation per secret has not ended
CREATE UNIQUE INDEX rotations_one_active ON rotations (secret) WHERE active = 1;
CREATE INDEX rotations_by_secret ON rotations (secret, created_at);

CREATE TABLE events (
    -- assigned from counters('event') while holding its row lock: commit order
    id          INTEGER PRIMARY KEY,
    secret      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    version     INTEGER,
    labels      TEXT    NOT NULL,
    at          INTEGER NOT NULL
);

CREATE UNIQUE INDEX events_by_secret ON events (secret, seq);

CREATE TABLE counters (
    name        TEXT    PRIMARY KEY,
    value       INTEGER NOT NULL
);

INSERT INTO counters (name, value) VALUES ('event', 0);

CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    secret      TEXT,
    version     INTEGER,
    rotation    TEXT,
    outcome     TEXT    NOT NULL,
    detail      TEXT,
    at          INTEGER NOT NULL
);

CREATE INDEX audit_by_secret ON audit (secret, id);

-- the audit log is append-only
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TABLE tokens (
    id          TEXT    PRIMARY KEY,
    secret_hash BLOB    NOT NULL,
    description TEXT    NOT NULL,
    grants      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- a known plaintext encrypted under the master key the store was initialised with
CREATE TABLE key_check (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    key_id      TEXT    NOT NULL,
    nonce       BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);
