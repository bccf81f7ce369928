//! `hookrpc migrate`: a SQLite deployment copied into an empty PostgreSQL database, every
//! table with its ids, so that keys, webhooks (and their secrets), events, deliveries and
//! attempts carry on as they were. Each table streams in chunks from a SQLite reader to the
//! PostgreSQL transaction. Secrets are copied as stored, sealed, with the key check beside
//! them: the PostgreSQL nodes must be given the SQLite deployment's key, and are refused at
//! start with any other.

use super::secrets::{deployment_key, verify_key};
use super::{postgres::Postgres, sqlite::Sqlite};
use crate::config::EncryptionKey;
use crate::error::ApiError;
use std::path::Path;
use tokio::sync::mpsc;

/// Every table with data, parents before children (SQLite's foreign keys hold at each insert).
pub const TABLES: &[&str] = &[
    "accounts",
    "api_keys",
    "webhooks",
    "webhook_events",
    "events",
    "deliveries",
    "attempts",
    "delivery_attempts",
    "attempt_stats",
    "encryption_key_check",
];

/// Rows as column → value.
pub type Chunk = Vec<serde_json::Value>;
pub const CHUNK_ROWS: usize = 1000;

/// A table and how many rows it holds on each side after the copy.
pub struct Copied {
    pub table: &'static str,
    pub from: i64,
    pub to: i64,
}

/// What a copy did.
pub struct Migrated {
    /// Each table's rows on both sides.
    pub tables: Vec<Copied>,
    /// Where the key the secrets are sealed with came from (none when the SQLite deployment has
    /// sealed nothing yet: the first PostgreSQL node to start seals them with its key).
    pub key_origin: Option<String>,
}

/// Copies the SQLite database at `from` into the empty PostgreSQL database `to`, once `key` (or
/// the key file beside `from`) has proven to be the key its secrets are sealed with; returns
/// the row counts of both sides, which must agree.
pub async fn sqlite_to_postgres(
    from: &Path,
    to: &str,
    key: Option<&EncryptionKey>,
) -> Result<Migrated, ApiError> {
    if !from.is_file() {
        return Err(ApiError::invalid(
            "from",
            format!("no such file: {}", from.display()),
        ));
    }
    if !super::is_postgres_url(to) {
        return Err(ApiError::invalid("to", "give a postgres://… url"));
    }
    let sqlite = Sqlite::open(from, 1)?;
    let key_origin = check_key(&sqlite, from, key).await?;
    let postgres = Postgres::open(to, false).await?;
    let import = postgres.begin_import().await?;
    for table in TABLES {
        let (sender, chunks) = mpsc::channel(4);
        let export = sqlite.export(table, sender);
        let (_, copied) = tokio::join!(export, import.table(table, chunks));
        copied?;
    }
    import.finish().await?;
    let mut counts = Vec::new();
    for table in TABLES {
        counts.push(Copied {
            table,
            from: sqlite.count_rows(table).await?,
            to: postgres.count_rows(table).await?,
        });
    }
    match counts.iter().find(|c| c.from != c.to) {
        Some(c) => Err(ApiError::Internal(format!(
            "{}: {} rows in SQLite but {} in PostgreSQL",
            c.table, c.from, c.to
        ))),
        None => Ok(Migrated {
            tables: counts,
            key_origin,
        }),
    }
}

/// Where the key of the SQLite deployment's sealed secrets comes from, once it has opened the
/// key check; none if nothing is sealed yet. Never creates a key file.
async fn check_key(
    sqlite: &Sqlite,
    from: &Path,
    given: Option<&EncryptionKey>,
) -> Result<Option<String>, ApiError> {
    let Some(check) = sqlite.key_check().await? else {
        return Ok(None);
    };
    let (key, origin) = deployment_key(&from.to_string_lossy(), given, true)?;
    verify_key(&key, &check, &origin)?;
    Ok(Some(origin))
}
