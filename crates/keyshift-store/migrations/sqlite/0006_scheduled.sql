-- keyshift store schema v6: whether the scheduler looks at a secret
-- (SecretKind::scheduled: it rotates and has a schedule, or is an x509
-- certificate), so that it reads those secrets alone instead of all of them.

ALTER TABLE secrets ADD COLUMN scheduled INTEGER NOT NULL DEFAULT 0;
UPDATE secrets SET scheduled = 1
 WHERE kind = 'x509'
    OR (kind NOT IN ('static', 'x509-ca') AND json_extract(policy, '$.schedule') IS NOT NULL);
CREATE INDEX secrets_scheduled ON secrets (scheduled);
