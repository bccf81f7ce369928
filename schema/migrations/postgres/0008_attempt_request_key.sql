-- The key the engine draws at random for each request, kept with its attempt. A record that
-- the engine tries again, because its first try's answer was lost with the connection, looks
-- for it among the attempts of the deliveries it carried (through `delivery_attempts`, by
-- their keys) to learn whether that first try committed after all, and then writes nothing:
-- one request is one attempt, counted once. No index: only such a retry reads it. Attempts
-- recorded before this have none.

ALTER TABLE attempts ADD COLUMN request_key BIGINT;
