-- Retention (--retention): an event is removed, with its deliveries and attempts, once every
-- delivery of it is final and the last became final longer ago than the retention. The time a
-- delivery became final was not kept until now: `final_time` (epoch seconds) is set by the
-- statement that makes it succeeded, failed or cancelled, and cleared when it is retried.
-- Deliveries final before this migration count from their last attempt (or their creation).
--
-- Two indexes serve the removal, and the foreign-key checks of its deletes: an attempt is
-- removed once no delivery links to it (delivery_attempts by attempt_id), and a webhook deleted
-- long ago once no delivery or attempt names it (attempts by webhook_id; deliveries already
-- have deliveries_webhook).

ALTER TABLE deliveries ADD COLUMN final_time INTEGER;

UPDATE deliveries SET final_time = coalesce(last_attempt_time, creation_time)
    WHERE status <> 'pending';

CREATE INDEX delivery_attempts_attempt ON delivery_attempts (attempt_id);
CREATE INDEX attempts_webhook ON attempts (webhook_id);
