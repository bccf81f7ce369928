-- Retention (--retention), as SQLite's migration 0007: `final_time` (epoch seconds) is when a
-- delivery became succeeded, failed or cancelled (cleared when it is retried); deliveries final
-- before this migration count from their last attempt (or their creation). The indexes serve
-- the removal and the foreign-key checks of its deletes: attempts no delivery links to any
-- more, and webhooks deleted long ago that no attempt names.

ALTER TABLE deliveries ADD COLUMN final_time BIGINT;

UPDATE deliveries SET final_time = coalesce(last_attempt_time, creation_time)
    WHERE status <> 'pending';

CREATE INDEX delivery_attempts_attempt ON delivery_attempts (attempt_id);
CREATE INDEX attempts_webhook ON attempts (webhook_id);

-- Retention deletes all the time. PostgreSQL reuses the space of deleted rows once they are
-- vacuumed, and autovacuum's default waits until a fifth of a table is dead: the tables would
-- grow a fifth past their steady size first. A twentieth keeps them closer to it.
ALTER TABLE events SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE deliveries SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE delivery_attempts SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE attempts SET (autovacuum_vacuum_scale_factor = 0.05);
