//! Applies `schema/migrations/*.sql` in order at start-up. The files are compiled into the
//! binary so that one file is all an operator ships; `PRAGMA user_version` records how far a
//! database has come.

use crate::error::ApiError;
use rusqlite::Connection;

/// Every migration, in order; the version of each is its position (1-based).
const MIGRATIONS: &[&str] = &[include_str!("../../schema/migrations/0001_init.sql")];

pub(super) fn apply(conn: &mut Connection) -> Result<(), ApiError> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(ApiError::Internal(format!(
            "database schema version {current} is newer than this binary ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}
