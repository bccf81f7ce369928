-- getDeliveryStats reads counts kept as attempts are recorded, not the attempts themselves, so
-- its cost follows the length of the period asked about, not the number of deliveries in it.
-- Every attempt adds to one row per span (a minute and an hour): the row of its webhook, of
-- the period it was made in and of the class of its duration (latency_class in model.rs).
-- Attempts made before this migration are not counted.
-- (Numbered 0006: 0005 is taken by another branch.)

CREATE TABLE attempt_stats (
    webhook_id    INTEGER NOT NULL REFERENCES webhooks(id),
    span          INTEGER NOT NULL,  -- the period's length in seconds: 60 or 3600
    start         INTEGER NOT NULL,  -- the period's start, epoch seconds, a multiple of span
    latency_class INTEGER NOT NULL,  -- upper bound (ms) of the attempts' duration class
    attempts      INTEGER NOT NULL,  -- requests made
    succeeded     INTEGER NOT NULL,  -- deliveries they carried, by what became of them
    retried       INTEGER NOT NULL,
    failed        INTEGER NOT NULL,
    PRIMARY KEY (webhook_id, span, start, latency_class)
) STRICT, WITHOUT ROWID;

-- The account-wide statistics start from the account's webhooks (deleted ones included).
CREATE INDEX webhooks_account ON webhooks (account_id);
