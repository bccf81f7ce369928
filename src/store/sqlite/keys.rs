//! Accounts and API keys. Only the SHA-256 of a key is stored; the key is shown once.

use super::Sqlite;
use crate::error::ApiError;
use crate::model::{now_secs, Access, Caller};
use crate::store::{hash_key, new_key, KeyInfo, KeyPrefix};
use rusqlite::{params, Connection, OptionalExtension};

fn account_id(conn: &Connection, name: &str) -> Result<i64, ApiError> {
    conn.execute(
        "INSERT INTO accounts (name, creation_time) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, now_secs()],
    )?;
    Ok(
        conn.query_row("SELECT id FROM accounts WHERE name = ?1", [name], |r| {
            r.get(0)
        })?,
    )
}

impl Sqlite {
    /// Creates a key for `account` (creating the account if needed); returns the key.
    pub async fn add_key(&self, account: &str, access: Access) -> Result<String, ApiError> {
        let account = account.to_owned();
        self.write(move |conn| {
            let id = account_id(conn, &account)?;
            let key = new_key();
            conn.execute(
                "INSERT INTO api_keys (account_id, key_hash, prefix, access, creation_time)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, hash_key(&key), &key[..8], access.as_str(), now_secs()],
            )?;
            Ok(key)
        })
        .await
    }

    /// On an empty database: account `default` with one full key, returned once.
    pub async fn bootstrap(&self) -> Result<Option<String>, ApiError> {
        let empty = self
            .write(|conn| {
                let n: i64 = conn.query_row("SELECT count(*) FROM api_keys", [], |r| r.get(0))?;
                Ok(n == 0)
            })
            .await?;
        if !empty {
            return Ok(None);
        }
        Ok(Some(self.add_key("default", Access::Full).await?))
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, ApiError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT k.prefix, a.name, k.access, k.creation_time, k.revoked_time
                 FROM api_keys k JOIN accounts a ON a.id = k.account_id ORDER BY k.id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(KeyInfo {
                    prefix: r.get(0)?,
                    account: r.get(1)?,
                    access: Access::parse(&r.get::<_, String>(2)?).unwrap_or(Access::Standard),
                    creation_time: r.get(3)?,
                    revoked_time: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Revokes the one live key named by `prefix` (its first characters as `key list` shows
    /// them, or the whole key). An ambiguous prefix revokes nothing.
    pub async fn revoke_key(&self, prefix: &str) -> Result<(), ApiError> {
        let given = KeyPrefix::parse(prefix)?;
        self.write(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id FROM api_keys WHERE revoked_time IS NULL
                 AND (key_hash = ?1 OR (?2 <> '' AND substr(prefix, 1, length(?2)) = ?2))",
            )?;
            let ids = stmt
                .query_map(params![given.hash, given.short], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            conn.execute(
                "UPDATE api_keys SET revoked_time = ?1 WHERE id = ?2",
                params![now_secs(), given.only_one(&ids)?],
            )?;
            Ok(())
        })
        .await
    }

    /// Who is calling: the account and access level of the live key with this [`hash_key`].
    pub async fn authenticate(&self, hash: &str) -> Result<Caller, ApiError> {
        self.lookup(move |conn| {
            conn.prepare_cached(
                "SELECT account_id, access FROM api_keys WHERE key_hash = ?1 AND revoked_time IS NULL",
            )?
            .query_row([hash], |r| {
                Ok(Caller {
                    account_id: r.get(0)?,
                    access: Access::parse(&r.get::<_, String>(1)?).unwrap_or(Access::Standard),
                })
            })
            .optional()?
            .ok_or(ApiError::InvalidKey)
        })
    }
}
