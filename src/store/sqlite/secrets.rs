//! The sealed columns as SQLite stores them: the key check, and the plain-text secrets that a
//! start seals (store/secrets.rs does the sealing; this only reads and writes rows).

use super::Sqlite;
use crate::error::ApiError;
use crate::store::secrets::SecretColumns;
use rusqlite::{params, Connection, OptionalExtension};

impl Sqlite {
    /// The sealed key check, once a start with a key has written it.
    pub async fn key_check(&self) -> Result<Option<String>, ApiError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT sealed FROM encryption_key_check", [], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// Stores `proposed` as the key check unless there is one; returns the one stored.
    pub async fn init_key_check(&self, proposed: String) -> Result<String, ApiError> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO encryption_key_check (id, sealed) VALUES (1, ?1)
                 ON CONFLICT (id) DO NOTHING",
                [&proposed],
            )?;
            Ok(conn.query_row("SELECT sealed FROM encryption_key_check", [], |r| r.get(0))?)
        })
        .await
    }

    /// Up to `limit` webhooks after `after` (by id), deleted ones too, with a secret or
    /// password not starting with `sealed_prefix`.
    pub async fn plain_secrets(
        &self,
        sealed_prefix: &'static str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<SecretColumns>, ApiError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, account_id, secret, previous_secret, auth_password FROM webhooks
                 WHERE id > ?2 AND (substr(secret, 1, length(?1)) <> ?1
                   OR substr(previous_secret, 1, length(?1)) <> ?1
                   OR substr(auth_password, 1, length(?1)) <> ?1)
                 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![sealed_prefix, after, limit], |r| {
                Ok(SecretColumns {
                    webhook_id: r.get(0)?,
                    account_id: r.get(1)?,
                    secret: r.get(2)?,
                    previous_secret: r.get(3)?,
                    password: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Writes each webhook's new secret columns where they still hold the old ones; returns
    /// how many webhooks changed.
    pub async fn replace_secrets(
        &self,
        changes: Vec<(SecretColumns, SecretColumns)>,
    ) -> Result<u64, ApiError> {
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE webhooks SET secret = ?5, previous_secret = ?6, auth_password = ?7
                 WHERE id = ?1 AND secret = ?2 AND previous_secret IS ?3 AND auth_password IS ?4",
            )?;
            let mut changed = 0;
            for (old, new) in changes {
                changed += stmt.execute(params![
                    old.webhook_id,
                    old.secret,
                    old.previous_secret,
                    old.password,
                    new.secret,
                    new.previous_secret,
                    new.password
                ])? as u64;
            }
            Ok(changed)
        })
        .await
    }

    /// After plain-text secrets were sealed. SQLite leaves the bytes of a changed row where
    /// they were (in the free space of its page, in pages on the free list, in WAL frames)
    /// until something happens to overwrite them, so a copy of the file would still show the
    /// old plain text. VACUUM rebuilds every page and the TRUNCATE checkpoint empties the WAL.
    /// Run once, by the start that sealed them, before anything else writes; it needs free disk
    /// space for a copy of the database. Outside the writer: VACUUM cannot run in a
    /// transaction.
    pub async fn scrub_after_sealing(&self) -> Result<(), ApiError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&*path)?;
            conn.busy_timeout(std::time::Duration::from_secs(30))?;
            conn.execute_batch("VACUUM")?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("vacuum task: {e}")))?
    }
}
