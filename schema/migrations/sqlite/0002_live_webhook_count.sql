-- Each account's count of live (not deleted) webhooks, kept by triggers in the same
-- transaction as the change. addWebhook checks the per-account limit (355) against it instead
-- of counting rows, which cost O(webhooks) per insert.

ALTER TABLE accounts ADD COLUMN live_webhooks INTEGER NOT NULL DEFAULT 0;

UPDATE accounts SET live_webhooks =
    (SELECT count(*) FROM webhooks w WHERE w.account_id = accounts.id AND w.deleted_time IS NULL);

CREATE TRIGGER webhooks_count_insert AFTER INSERT ON webhooks WHEN NEW.deleted_time IS NULL
BEGIN
    UPDATE accounts SET live_webhooks = live_webhooks + 1 WHERE id = NEW.account_id;
END;

CREATE TRIGGER webhooks_count_delete AFTER UPDATE OF deleted_time ON webhooks
    WHEN OLD.deleted_time IS NULL AND NEW.deleted_time IS NOT NULL
BEGIN
    UPDATE accounts SET live_webhooks = live_webhooks - 1 WHERE id = NEW.account_id;
END;
