-- Secrets at rest, as SQLite's migration 0008: a known text sealed with the deployment's key,
-- written by the first node that starts with a key (the others read it), so that a node given
-- another key is refused at start.

CREATE TABLE encryption_key_check (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    sealed TEXT COLLATE "C" NOT NULL
);
