-- An answer is held against its webhook only if its request went out since the webhook was
-- last turned on again. Migration 0009 told that by time (`activated_ms` against the time the
-- request went out), which compares two clocks when another node sends it; a count of
-- reactivations, read with the claim and carried by the answer, compares no clocks.

ALTER TABLE webhooks ADD COLUMN activation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks DROP COLUMN activated_ms;
