-- One row that /health rewrites to learn whether the database takes writes again after a
-- write failed: a COMMIT that changes no page writes nothing to the WAL, so it would succeed
-- on a full disk and prove nothing. Each probe changes the counter, so its commit is a real
-- write (a WAL frame and an fsync), refused exactly when other writes are.

CREATE TABLE write_probe (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    probes INTEGER NOT NULL
) STRICT;

INSERT INTO write_probe (id, probes) VALUES (1, 0);
