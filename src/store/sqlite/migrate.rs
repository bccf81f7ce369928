//! Applies `schema/migrations/sqlite/*.sql` in order at start-up. The files are compiled into the
//! binary so that one file is all an operator ships; `PRAGMA user_version` records how far a
//! database has come.

use crate::error::ApiError;
use rusqlite::Connection;

/// Every migration, in order; the version of each is its position (1-based).
const MIGRATIONS: &[&str] = &[
    include_str!("../../../schema/migrations/sqlite/0001_init.sql"),
    include_str!("../../../schema/migrations/sqlite/0002_live_webhook_count.sql"),
    include_str!("../../../schema/migrations/sqlite/0003_claim_by_webhook.sql"),
    include_str!("../../../schema/migrations/sqlite/0004_write_probe.sql"),
    include_str!("../../../schema/migrations/sqlite/0005_multi_event_webhooks.sql"),
    include_str!("../../../schema/migrations/sqlite/0006_attempt_stats.sql"),
    include_str!("../../../schema/migrations/sqlite/0007_retention.sql"),
    include_str!("../../../schema/migrations/sqlite/0008_sealed_secrets.sql"),
    include_str!("../../../schema/migrations/sqlite/0009_circuit_opened_time.sql"),
    include_str!("../../../schema/migrations/sqlite/0010_activation_count.sql"),
];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_database_counts_its_live_webhooks_when_upgraded() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO accounts (id, name, creation_time) VALUES (1, 'a', 0), (2, 'b', 0);
             INSERT INTO webhooks (account_id, name, description, object, event, list_id, url,
               headers, secret, is_active, batch_size, metadata, creation_time,
               last_modified_time, deleted_time)
             VALUES (1, 'n', '', 'list', 'created', 0, 'https://a/1', '[]', 's', 1, 1, '{}', 0, 0, NULL),
                    (1, 'n', '', 'list', 'created', 0, 'https://a/2', '[]', 's', 1, 1, '{}', 0, 0, 5),
                    (1, 'n', '', 'list', 'created', 0, 'https://a/3', '[]', 's', 1, 1, '{}', 0, 0, NULL);",
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let live = |id: i64| -> i64 {
            conn.query_row(
                "SELECT live_webhooks FROM accounts WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!((live(1), live(2)), (2, 0));
        // From now on the triggers keep it.
        conn.execute(
            "UPDATE webhooks SET deleted_time = 9 WHERE url = 'https://a/1'",
            [],
        )
        .unwrap();
        assert_eq!(live(1), 1);
    }

    #[test]
    fn an_existing_database_keeps_what_its_webhooks_follow_when_upgraded() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&MIGRATIONS[..4].concat()).unwrap();
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute_batch(
            "INSERT INTO accounts (id, name, creation_time) VALUES (1, 'a', 0);
             INSERT INTO webhooks (id, account_id, name, description, object, event, list_id, url,
               headers, secret, is_active, batch_size, metadata, creation_time,
               last_modified_time, deleted_time)
             VALUES (1, 1, 'n', '', 'list', 'created', 0, 'https://a/1', '[]', 's', 1, 1, '{}', 0, 0, NULL),
                    (2, 1, 'n', '', 'contact', 'updated', 0, 'https://a/1', '[]', 's', 1, 1, '{}', 0, 0, 5);",
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let events: Vec<String> = conn
            .prepare("SELECT events FROM webhooks ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(events, [r#"["created"]"#, r#"["updated"]"#]);
        // Only live webhooks follow anything.
        let followed: Vec<(i64, i64, String, String)> = conn
            .prepare("SELECT webhook_id, account_id, object, event FROM webhook_events")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(followed, [(1, 1, "list".to_owned(), "created".to_owned())]);
    }
}
