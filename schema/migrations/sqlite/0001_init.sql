-- hookrpc schema, version 1. Times shown by the API are epoch seconds; scheduling columns
-- (*_ms) are epoch milliseconds so that sub-second retry schedules work in tests.

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    creation_time INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts(id),
    key_hash      TEXT    NOT NULL UNIQUE,   -- hex SHA-256 of the key; the key itself is never stored
    prefix        TEXT    NOT NULL,          -- first 8 characters, to name a key in `key list`/`revoke`
    access        TEXT    NOT NULL CHECK (access IN ('full', 'standard')),
    creation_time INTEGER NOT NULL,
    revoked_time  INTEGER
) STRICT;

CREATE TABLE webhooks (
    id                     INTEGER PRIMARY KEY,
    account_id             INTEGER NOT NULL REFERENCES accounts(id),
    name                   TEXT    NOT NULL,
    description            TEXT    NOT NULL,
    object                 TEXT    NOT NULL,
    event                  TEXT    NOT NULL,
    list_id                INTEGER NOT NULL,
    url                    TEXT    NOT NULL,
    headers                TEXT    NOT NULL,  -- JSON array of {name, value}
    auth_username          TEXT,
    auth_password          TEXT,
    secret                 TEXT    NOT NULL,
    previous_secret        TEXT,              -- still signed with until previous_secret_until
    previous_secret_until  INTEGER,
    is_active              INTEGER NOT NULL,
    batch_size             INTEGER NOT NULL,
    metadata               TEXT    NOT NULL,  -- JSON object, returned as given
    circuit_state          TEXT    NOT NULL DEFAULT 'closed' CHECK (circuit_state IN ('closed', 'open')),
    next_probe_ms          INTEGER,           -- when the circuit is open: earliest next probe
    consecutive_failures   INTEGER NOT NULL DEFAULT 0,
    last_error_time        INTEGER,
    last_error_message     TEXT,
    last_success_time      INTEGER,
    creation_time          INTEGER NOT NULL,
    last_modified_time     INTEGER NOT NULL,
    deleted_time           INTEGER            -- soft delete: deliveries keep their webhook_id
) STRICT;

-- A webhook's identity (API.md 351), among the live ones only.
CREATE UNIQUE INDEX webhooks_identity
    ON webhooks (account_id, object, event, list_id, url) WHERE deleted_time IS NULL;
CREATE INDEX webhooks_fanout
    ON webhooks (account_id, object, event) WHERE deleted_time IS NULL AND is_active = 1;

CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts(id),
    object          TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    list_id         INTEGER NOT NULL,
    contact_id      INTEGER,
    data            TEXT    NOT NULL,  -- JSON object
    idempotency_key TEXT,
    creation_time   INTEGER NOT NULL,
    delivery_count  INTEGER NOT NULL
) STRICT;

CREATE INDEX events_account ON events (account_id, id);
CREATE INDEX events_idempotency
    ON events (account_id, idempotency_key, creation_time) WHERE idempotency_key IS NOT NULL;

CREATE TABLE deliveries (
    id                INTEGER PRIMARY KEY,
    account_id        INTEGER NOT NULL REFERENCES accounts(id),
    webhook_id        INTEGER NOT NULL REFERENCES webhooks(id),
    event_id          INTEGER NOT NULL REFERENCES events(id),
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    -- pending: when the next attempt may start. A claim by the delivery engine moves it to the
    -- end of the claim's lease, so a crash leaves work that simply falls due again.
    due_ms            INTEGER,
    schedule_start    INTEGER NOT NULL DEFAULT 0,  -- attempt_count when the retry schedule (re)started
    last_attempt_time INTEGER,
    last_status_code  INTEGER,
    last_error        TEXT,
    creation_time     INTEGER NOT NULL
) STRICT;

CREATE INDEX deliveries_due ON deliveries (due_ms) WHERE status = 'pending';
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, status);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_account ON deliveries (account_id, id);

-- One row per HTTP request; a batch request is one attempt shared by its deliveries.
CREATE TABLE attempts (
    id            INTEGER PRIMARY KEY,
    webhook_id    INTEGER NOT NULL REFERENCES webhooks(id),
    time          INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    response_body TEXT
) STRICT;

CREATE TABLE delivery_attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
    attempt_id  INTEGER NOT NULL REFERENCES attempts(id),
    PRIMARY KEY (delivery_id, attempt_id)
) STRICT, WITHOUT ROWID;
