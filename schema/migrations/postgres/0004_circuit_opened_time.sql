-- Operational events, as SQLite's migration 0009: the time a webhook's circuit opened (epoch
-- seconds; NULL while closed), for --disable-after. Circuits open before it count from now.
-- `activated_ms`: when an edit last turned the webhook on again (epoch ms).

ALTER TABLE webhooks ADD COLUMN circuit_opened_time BIGINT;
ALTER TABLE webhooks ADD COLUMN activated_ms BIGINT;

UPDATE webhooks SET circuit_opened_time = extract(epoch FROM now())::bigint
    WHERE circuit_state = 'open';
