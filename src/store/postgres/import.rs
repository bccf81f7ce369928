//! Writes whole tables in, for `hookrpc migrate` (store/copy.rs): into an empty database, in
//! one transaction, so a copy that fails leaves nothing behind and can simply be run again.

use super::{row, Postgres};
use crate::error::ApiError;
use crate::store::copy::{Chunk, TABLES};
use deadpool_postgres::{GenericClient, Object};
use tokio::sync::mpsc;

/// A copy under way: the connection whose transaction holds it.
pub struct Import {
    client: Object,
}

impl Postgres {
    /// Starts a copy into this database, which must hold no data yet.
    pub async fn begin_import(&self) -> Result<Import, ApiError> {
        let client = self.client().await?;
        for table in TABLES {
            let rows: i64 = row(&client, &format!("SELECT count(*) FROM {table}"), &[])
                .await?
                .try_get(0)?;
            if rows > 0 {
                return Err(ApiError::invalid(
                    "to",
                    format!("the database is not empty ({table} has {rows} rows): copy into an empty one"),
                ));
            }
        }
        client.batch_execute("BEGIN").await?;
        Ok(Import { client })
    }

    /// How many rows `table` holds.
    pub async fn count_rows(&self, table: &str) -> Result<i64, ApiError> {
        let client = self.client().await?;
        Ok(row(&client, &format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .try_get(0)?)
    }
}

impl Import {
    /// Inserts every chunk of `table` as it comes (rows as column → value, converted to the
    /// columns' types by PostgreSQL); returns how many rows.
    pub async fn table(
        &self,
        table: &'static str,
        mut chunks: mpsc::Receiver<Result<Chunk, ApiError>>,
    ) -> Result<u64, ApiError> {
        let mut copied = 0;
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk?;
            let Some(columns) = chunk
                .first()
                .and_then(|r| r.as_object())
                .map(|r| r.keys().cloned().collect::<Vec<_>>().join(", "))
            else {
                continue;
            };
            let sql = format!(
                "INSERT INTO {table} ({columns}) SELECT {columns}
                 FROM json_populate_recordset(NULL::{table}, $1::text::json)"
            );
            let rows = serde_json::to_string(&chunk)?;
            copied += self.client.execute(sql.as_str(), &[&rows]).await?;
        }
        Ok(copied)
    }

    /// Sets what the copy leaves to be derived (each account's count of live webhooks, the
    /// next id of each table) and commits.
    pub async fn finish(self) -> Result<(), ApiError> {
        let c = &self.client;
        c.batch_execute(
            "UPDATE accounts a SET live_webhooks = (SELECT count(*) FROM webhooks w
               WHERE w.account_id = a.id AND w.deleted_time IS NULL)",
        )
        .await?;
        // Tables whose rows are not numbered by an identity.
        let without_id = [
            "webhook_events",
            "delivery_attempts",
            "encryption_key_check",
            "attempt_stats",
        ];
        for table in TABLES.iter().filter(|t| !without_id.contains(t)) {
            c.batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                   coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
            ))
            .await?;
        }
        c.batch_execute("COMMIT").await?;
        Ok(())
    }
}
