-- The engine claims due work oldest first, one webhook at a time: it finds the next webhook
-- with due work through deliveries_due, then takes that webhook's share, oldest first, through
-- deliveries_webhook. A burst fanned out to many webhooks then goes out in full batches to many
-- of them at once, instead of a thin slice of every webhook per request.

DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (due_ms, webhook_id) WHERE status = 'pending';

DROP INDEX deliveries_webhook;
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, status, due_ms);
