//! Applies `schema/migrations/postgres/*.sql` in order at start-up, compiled into the binary.
//! `schema_migrations` records how far a database has come. Nodes that start at the same
//! moment take turns on an advisory lock, so each migration runs once per database.

use crate::error::ApiError;
use crate::model::now_secs;
use deadpool_postgres::Object;

/// Every migration, in order; the version of each is its position (1-based).
const MIGRATIONS: &[&str] = &[
    include_str!("../../../schema/migrations/postgres/0001_init.sql"),
    include_str!("../../../schema/migrations/postgres/0002_retention.sql"),
    include_str!("../../../schema/migrations/postgres/0003_sealed_secrets.sql"),
    include_str!("../../../schema/migrations/postgres/0004_circuit_opened_time.sql"),
    include_str!("../../../schema/migrations/postgres/0005_activation_count.sql"),
    include_str!("../../../schema/migrations/postgres/0006_no_link_foreign_keys.sql"),
    include_str!("../../../schema/migrations/postgres/0007_stats_log_counts.sql"),
    include_str!("../../../schema/migrations/postgres/0008_attempt_request_key.sql"),
];

/// The advisory lock's key: "hookrpc" in ASCII.
const LOCK: i64 = 0x0068_6f6f_6b72_7063;

pub(super) async fn apply(client: &mut Object) -> Result<(), ApiError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await?;
    let applied = apply_locked(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await;
    applied?;
    unlocked?;
    Ok(())
}

async fn apply_locked(client: &mut Object) -> Result<(), ApiError> {
    // Asked first, rather than `CREATE TABLE IF NOT EXISTS`, whose notice that the table
    // exists would be logged at every start and by every `key` command.
    let created: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !created {
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (
                   version BIGINT PRIMARY KEY, applied_time BIGINT NOT NULL)",
            )
            .await?;
    }
    let current: i64 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    if current as usize > MIGRATIONS.len() {
        return Err(ApiError::Internal(format!(
            "database schema version {current} is newer than this binary ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_time) VALUES ($1, $2)",
            &[&(index as i64 + 1), &now_secs()],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}
