//! Accounts and API keys. Only the SHA-256 of a key is stored; the key is shown once.

use super::{exec, row, row_opt, rows, Postgres};
use crate::error::ApiError;
use crate::model::{now_secs, Access, Caller};
use crate::store::{hash_key, new_key, KeyInfo};
use deadpool_postgres::GenericClient;

async fn account_id(c: &impl GenericClient, name: &str) -> Result<i64, ApiError> {
    exec(
        c,
        "INSERT INTO accounts (name, creation_time) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &now_secs()],
    )
    .await?;
    Ok(row(c, "SELECT id FROM accounts WHERE name = $1", &[&name])
        .await?
        .try_get(0)?)
}

fn access(text: &str) -> Access {
    Access::parse(text).unwrap_or(Access::Standard)
}

impl Postgres {
    /// Creates a key for `account` (creating the account if needed); returns the key.
    pub async fn add_key(&self, account: &str, access: Access) -> Result<String, ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = account_id(&tx, account).await?;
        let key = new_key();
        exec(
            &tx,
            "INSERT INTO api_keys (account_id, key_hash, prefix, access, creation_time)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &id,
                &hash_key(&key),
                &&key[..8],
                &access.as_str(),
                &now_secs(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    /// On an empty database: account `default` with one full key, returned once. Nodes that
    /// start together on an empty database take turns (a transaction-scoped advisory lock),
    /// so exactly one of them creates it.
    pub async fn bootstrap(&self) -> Result<Option<String>, ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        exec(
            &tx,
            "SELECT pg_advisory_xact_lock(hashtext('hookrpc bootstrap'))",
            &[],
        )
        .await?;
        let keys: i64 = row(&tx, "SELECT count(*) FROM api_keys", &[])
            .await?
            .try_get(0)?;
        if keys > 0 {
            return Ok(None);
        }
        let id = account_id(&tx, "default").await?;
        let key = new_key();
        exec(
            &tx,
            "INSERT INTO api_keys (account_id, key_hash, prefix, access, creation_time)
             VALUES ($1, $2, $3, 'full', $4)",
            &[&id, &hash_key(&key), &&key[..8], &now_secs()],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(key))
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, ApiError> {
        let client = self.client().await?;
        rows(
            &client,
            "SELECT k.prefix, a.name, k.access, k.creation_time, k.revoked_time
             FROM api_keys k JOIN accounts a ON a.id = k.account_id ORDER BY k.id",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(KeyInfo {
                prefix: r.try_get(0)?,
                account: r.try_get(1)?,
                access: access(r.try_get(2)?),
                creation_time: r.try_get(3)?,
                revoked_time: r.try_get(4)?,
            })
        })
        .collect()
    }

    /// Revokes the one live key named by `prefix` (its first characters as `key list` shows
    /// them, or the whole key). An ambiguous prefix revokes nothing.
    pub async fn revoke_key(&self, prefix: &str) -> Result<(), ApiError> {
        let given = crate::store::KeyPrefix::parse(prefix)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let ids = rows(
            &tx,
            "SELECT id FROM api_keys WHERE revoked_time IS NULL
             AND (key_hash = $1 OR ($2 <> '' AND left(prefix, length($2)) = $2))
             FOR UPDATE",
            &[&given.hash, &given.short],
        )
        .await?;
        let id: i64 = given.only_one(&ids)?.try_get(0)?;
        exec(
            &tx,
            "UPDATE api_keys SET revoked_time = $1 WHERE id = $2",
            &[&now_secs(), &id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Who is calling: the account and access level of the live key with this [`hash_key`].
    pub async fn authenticate(&self, hash: &str) -> Result<Caller, ApiError> {
        let client = self.client().await?;
        let found = row_opt(
            &client,
            "SELECT account_id, access FROM api_keys WHERE key_hash = $1 AND revoked_time IS NULL",
            &[&hash],
        )
        .await?
        .ok_or(ApiError::InvalidKey)?;
        Ok(Caller {
            account_id: found.try_get(0)?,
            access: access(found.try_get(1)?),
        })
    }
}
