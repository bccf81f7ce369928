-- As SQLite's migration 0010: a count of the edits that turned the webhook on again, read
-- with each claim and carried by its answer, instead of `activated_ms` (a time set by the
-- node that made the edit, compared with one from the node that sent the request).

ALTER TABLE webhooks ADD COLUMN activation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhooks DROP COLUMN activated_ms;
