-- Operational events: a webhook whose circuit stays open longer than --disable-after is
-- deactivated, so the time its circuit opened is kept (epoch seconds; NULL while closed).
-- Circuits open before this migration count from now.

ALTER TABLE webhooks ADD COLUMN circuit_opened_time INTEGER;

UPDATE webhooks SET circuit_opened_time = unixepoch() WHERE circuit_state = 'open';
