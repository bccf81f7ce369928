//! The SQL of `deliveries` and `attempts` as the API shows them, and `retryDelivery`. The
//! engine's side of the same tables is `queue.rs`.

use super::Sqlite;
use crate::error::ApiError;
use crate::model::{now_ms, AttemptRecord, DeliveryRecord};
use crate::search::Criteria;
use rusqlite::types::Value as Sql;
use rusqlite::{params, Connection, OptionalExtension, Row};

const FROM: &str = "FROM deliveries WHERE account_id = ?";

const COLUMNS: &str = "id, webhook_id, event_id, status, attempt_count,
    CASE WHEN status = 'pending' THEN due_ms / 1000 END, last_attempt_time, last_status_code,
    last_error, creation_time";

fn delivery_record(r: &Row) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: r.get(0)?,
        webhook_id: r.get(1)?,
        event_id: r.get(2)?,
        status: r.get(3)?,
        attempt_count: r.get(4)?,
        next_attempt_time: r.get(5)?,
        last_attempt_time: r.get(6)?,
        last_status_code: r.get(7)?,
        last_error: r.get(8)?,
        creation_time: r.get(9)?,
        attempts: None,
    })
}

fn attempts(conn: &Connection, delivery_id: i64) -> Result<Vec<AttemptRecord>, ApiError> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.time, a.duration_ms, a.status_code, a.error, a.response_body
         FROM delivery_attempts da JOIN attempts a ON a.id = da.attempt_id
         WHERE da.delivery_id = ?1 ORDER BY a.id",
    )?;
    let rows = stmt.query_map([delivery_id], |r| {
        Ok(AttemptRecord {
            time: r.get(0)?,
            duration_ms: r.get(1)?,
            status_code: r.get(2)?,
            error: r.get(3)?,
            response_body: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Sqlite {
    pub async fn delivery(&self, account_id: i64, id: i64) -> Result<DeliveryRecord, ApiError> {
        self.read(move |conn| {
            let mut delivery = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM deliveries WHERE id = ?1 AND account_id = ?2"
                ))?
                .query_row(params![id, account_id], delivery_record)
                .optional()?
                .ok_or(ApiError::DeliveryNotFound)?;
            delivery.attempts = Some(attempts(conn, id)?);
            Ok(delivery)
        })
        .await
    }

    pub async fn search_deliveries(
        &self,
        account_id: i64,
        criteria: Criteria,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<DeliveryRecord>, ApiError> {
        self.read(move |conn| {
            super::filter::search(
                conn,
                COLUMNS,
                FROM,
                account_id,
                &criteria,
                (limit, offset),
                delivery_record,
            )
        })
        .await
    }

    pub async fn count_deliveries(
        &self,
        account_id: i64,
        criteria: Criteria,
    ) -> Result<i64, ApiError> {
        self.count(FROM, account_id, criteria).await
    }

    /// `retryDeliveries`: every failed (and, `with_cancelled`, cancelled) delivery matching
    /// `criteria` whose webhook is active and not deleted is due again now, each with a fresh
    /// run of the retry schedule; returns how many.
    pub async fn retry_deliveries(
        &self,
        account_id: i64,
        criteria: Criteria,
        with_cancelled: bool,
    ) -> Result<i64, ApiError> {
        let statuses = crate::store::rules::retried_statuses(with_cancelled);
        let sql = format!(
            "UPDATE deliveries SET status = 'pending', due_ms = ?, schedule_start = attempt_count,
               final_time = NULL
             WHERE account_id = ? AND status IN ({statuses})
               AND webhook_id IN (SELECT id FROM webhooks WHERE is_active = 1 AND deleted_time IS NULL)"
        );
        let queued = self
            .write(move |conn| {
                let leading = vec![Sql::Integer(now_ms()), Sql::Integer(account_id)];
                super::filter::update(conn, &sql, leading, &criteria)
            })
            .await?;
        if queued > 0 {
            self.waker.wake();
        }
        Ok(queued as i64)
    }

    /// `retryDelivery`: a failed or cancelled delivery is due again now, with a fresh run of
    /// the retry schedule. Its webhook must still exist and be active.
    pub async fn retry_delivery(&self, account_id: i64, id: i64) -> Result<(), ApiError> {
        self.write(move |conn| {
            let (status, active): (String, bool) = conn
                .prepare_cached(
                    "SELECT d.status, w.is_active AND w.deleted_time IS NULL
                     FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                     WHERE d.id = ?1 AND d.account_id = ?2",
                )?
                .query_row(params![id, account_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or(ApiError::DeliveryNotFound)?;
            crate::store::check_retryable(&status, active)?;
            conn.prepare_cached(
                "UPDATE deliveries SET status = 'pending', due_ms = ?2, schedule_start = attempt_count,
                   final_time = NULL WHERE id = ?1",
            )?
            .execute(params![id, now_ms()])?;
            Ok(())
        })
        .await
        .inspect(|_| self.waker.wake())
    }
}
