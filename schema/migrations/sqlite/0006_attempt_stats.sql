-- getDeliveryStats reads counts kept as attempts are recorded, not the attempts themselves, so
-- its cost follows the length of the period asked about, not the number of deliveries in it
-- nor the number of webhooks. Every attempt adds to four rows: its webhook's and its
-- account's (webhook_id 0), each for the minute and for the hour it was made in, in the class
-- of its duration (latency_class in model.rs). Attempts made before this migration are not
-- counted. (Numbered 0006: 0005 is taken by another branch.)

CREATE TABLE attempt_stats (
    account_id    INTEGER NOT NULL,
    webhook_id    INTEGER NOT NULL,  -- 0: the account's total, deleted webhooks included
    span          INTEGER NOT NULL,  -- the period's length in seconds: 60 or 3600
    start         INTEGER NOT NULL,  -- the period's start, epoch seconds, a multiple of span
    latency_class INTEGER NOT NULL,  -- upper bound (ms) of the attempts' duration class
    attempts      INTEGER NOT NULL,  -- requests made
    succeeded     INTEGER NOT NULL,  -- deliveries they carried, by what became of them
    retried       INTEGER NOT NULL,
    failed        INTEGER NOT NULL,
    PRIMARY KEY (account_id, webhook_id, span, start, latency_class)
) STRICT, WITHOUT ROWID;
