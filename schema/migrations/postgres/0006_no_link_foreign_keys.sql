-- The last foreign keys on the delivery path go, as those of migration 1's hot references did:
-- `deliveries.event_id` and both columns of `delivery_attempts`. Each check ran a query per
-- row inserted (a tenth of the database's CPU in `bench single`), and locked the delivery
-- and the attempt it names (`FOR KEY SHARE`, a write to each row's header and the log). The
-- store writes a delivery only with its event, and links an attempt only to deliveries that
-- its transaction has already updated (and so holds to its commit); retention locks the
-- deliveries it removes, then deletes links, deliveries, attempts and events, in that order,
-- so no link outlives what it names.

ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_delivery_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_attempt_id_fkey;
