-- A webhook follows several events of its object, or every one ('*'). `events` is the JSON
-- array as given (["*"] for every event), read back as it is; `webhook_events` holds one row
-- per live webhook and name, kept by the store in the same transaction as the webhook, so that
-- fan-out and searches by event go through an index instead of reading every webhook's array.
--
-- The old identity (one event per webhook) was a unique index; the duplicate rule is now an
-- overlap of events, which an index cannot state: the store checks it before each write, and
-- webhooks_identity becomes a plain index that finds the webhooks to compare with.

ALTER TABLE webhooks ADD COLUMN events TEXT NOT NULL DEFAULT '[]';
UPDATE webhooks SET events = json_array(event);

CREATE TABLE webhook_events (
    webhook_id INTEGER NOT NULL REFERENCES webhooks(id),
    account_id INTEGER NOT NULL,
    object     TEXT    NOT NULL,
    event      TEXT    NOT NULL,  -- an event of the object, or '*' for every one
    PRIMARY KEY (webhook_id, event)
) STRICT, WITHOUT ROWID;

CREATE INDEX webhook_events_fanout ON webhook_events (account_id, object, event);

INSERT INTO webhook_events (webhook_id, account_id, object, event)
    SELECT id, account_id, object, event FROM webhooks WHERE deleted_time IS NULL;

DROP INDEX webhooks_identity;
DROP INDEX webhooks_fanout;
ALTER TABLE webhooks DROP COLUMN event;

CREATE INDEX webhooks_identity
    ON webhooks (account_id, object, list_id, url) WHERE deleted_time IS NULL;
