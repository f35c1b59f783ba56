-- keyshift store schema v7: rotation leases. The replica driving an active
-- rotation holds its lease (lease_owner) until lease_until (milliseconds
-- since the epoch) and renews it; another replica takes a rotation whose
-- lease has expired and resumes it from its persisted phase.

ALTER TABLE rotations ADD COLUMN lease_owner TEXT;
ALTER TABLE rotations ADD COLUMN lease_until BIGINT;
