//! The sealed columns as PostgreSQL stores them: the key check, and the plain-text secrets that
//! a start seals (store/secrets.rs does the sealing; this only reads and writes rows).

use super::{row, rows, Postgres};
use crate::error::ApiError;
use crate::store::secrets::SecretColumns;

impl Postgres {
    /// The sealed key check, once a node with a key has written it.
    pub async fn key_check(&self) -> Result<Option<String>, ApiError> {
        Ok(rows(
            &self.client().await?,
            "SELECT sealed FROM encryption_key_check",
            &[],
        )
        .await?
        .first()
        .map(|r| r.try_get(0))
        .transpose()?)
    }

    /// Stores `proposed` as the key check unless there is one; returns the one stored (of
    /// nodes starting at once with no check yet, the first to commit wins, and the others are
    /// checked against its key).
    pub async fn init_key_check(&self, proposed: String) -> Result<String, ApiError> {
        let client = self.client().await?;
        let inserted = rows(
            &client,
            "INSERT INTO encryption_key_check (id, sealed) VALUES (1, $1)
             ON CONFLICT (id) DO NOTHING RETURNING sealed",
            &[&proposed],
        )
        .await?;
        match inserted.first() {
            Some(r) => Ok(r.try_get(0)?),
            None => Ok(row(&client, "SELECT sealed FROM encryption_key_check", &[])
                .await?
                .try_get(0)?),
        }
    }

    /// Up to `limit` webhooks after `after` (by id), deleted ones too, with a secret or
    /// password not starting with `sealed_prefix`.
    pub async fn plain_secrets(
        &self,
        sealed_prefix: &'static str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<SecretColumns>, ApiError> {
        rows(
            &self.client().await?,
            "SELECT id, account_id, secret, previous_secret, auth_password FROM webhooks
             WHERE id > $2 AND (NOT starts_with(secret, $1::text)
               OR NOT starts_with(previous_secret, $1::text)
               OR NOT starts_with(auth_password, $1::text))
             ORDER BY id LIMIT $3",
            &[&sealed_prefix, &after, &limit],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(SecretColumns {
                webhook_id: r.try_get(0)?,
                account_id: r.try_get(1)?,
                secret: r.try_get(2)?,
                previous_secret: r.try_get(3)?,
                password: r.try_get(4)?,
            })
        })
        .collect()
    }

    /// Writes each webhook's new secret columns where they still hold the old ones; returns
    /// how many webhooks changed.
    pub async fn replace_secrets(
        &self,
        changes: Vec<(SecretColumns, SecretColumns)>,
    ) -> Result<u64, ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut changed = 0;
        for (old, new) in changes {
            changed += super::exec(
                &tx,
                "UPDATE webhooks SET secret = $5, previous_secret = $6, auth_password = $7
                 WHERE id = $1 AND secret = $2 AND previous_secret IS NOT DISTINCT FROM $3
                   AND auth_password IS NOT DISTINCT FROM $4",
                &[
                    &old.webhook_id,
                    &old.secret,
                    &old.previous_secret,
                    &old.password,
                    &new.secret,
                    &new.previous_secret,
                    &new.password,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// After plain-text secrets were sealed: their old row versions stay in the table's files
    /// (dead, but readable in a copy of the data directory) until the space is reused. VACUUM
    /// FULL writes the table anew. It locks the table for that moment (milliseconds for the
    /// table of webhooks), once, on the start that sealed them. PostgreSQL's WAL, and backups
    /// taken before, still hold the old text.
    pub async fn scrub_after_sealing(&self) -> Result<(), ApiError> {
        self.client()
            .await?
            .batch_execute("VACUUM FULL webhooks")
            .await?;
        Ok(())
    }
}
