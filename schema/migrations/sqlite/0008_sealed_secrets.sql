-- Secrets at rest: webhook secrets and Basic-auth passwords are stored sealed with the
-- deployment's key (store/secrets.rs). This row holds a known text sealed with that key, so a
-- start with another key is refused before anything is signed or sent. Written by the first
-- start that has a key; existing plain-text secrets are sealed by that start too.

CREATE TABLE encryption_key_check (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    sealed TEXT    NOT NULL
) STRICT;
