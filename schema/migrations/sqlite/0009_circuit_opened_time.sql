-- Operational events: a webhook whose circuit stays open longer than --disable-after is
-- deactivated, so the time its circuit opened is kept (epoch seconds; NULL while closed).
-- Circuits open before this migration count from now. `activated_ms` is when an edit last
-- turned the webhook on again (epoch ms): answers to requests sent before then are not held
-- against it.

ALTER TABLE webhooks ADD COLUMN circuit_opened_time INTEGER;
ALTER TABLE webhooks ADD COLUMN activated_ms INTEGER;

UPDATE webhooks SET circuit_opened_time = unixepoch() WHERE circuit_state = 'open';
