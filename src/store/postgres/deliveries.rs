//! The SQL of `deliveries` and `attempts` as the API shows them, and the retries a caller
//! asks for. The engine's side of the same tables is `queue.rs`.

use super::filter::Bound;
use super::{exec, row_opt, rows, Postgres};
use crate::error::ApiError;
use crate::model::{now_ms, AttemptRecord, DeliveryRecord};
use crate::search::Criteria;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

const FROM: &str = "FROM deliveries WHERE account_id = $1";

const COLUMNS: &str = "id, webhook_id, event_id, status, attempt_count,
    CASE WHEN status = 'pending' THEN due_ms / 1000 END, last_attempt_time, last_status_code,
    last_error, creation_time";

fn delivery_record(r: &Row) -> Result<DeliveryRecord, ApiError> {
    Ok(DeliveryRecord {
        id: r.try_get(0)?,
        webhook_id: r.try_get(1)?,
        event_id: r.try_get(2)?,
        status: r.try_get(3)?,
        attempt_count: r.try_get(4)?,
        next_attempt_time: r.try_get(5)?,
        last_attempt_time: r.try_get(6)?,
        last_status_code: r.try_get(7)?,
        last_error: r.try_get(8)?,
        creation_time: r.try_get(9)?,
        attempts: None,
    })
}

async fn attempts(
    c: &impl GenericClient,
    delivery_id: i64,
) -> Result<Vec<AttemptRecord>, ApiError> {
    rows(
        c,
        "SELECT a.time, a.duration_ms, a.status_code, a.error, a.response_body
         FROM delivery_attempts da JOIN attempts a ON a.id = da.attempt_id
         WHERE da.delivery_id = $1 ORDER BY a.id",
        &[&delivery_id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(AttemptRecord {
            time: r.try_get(0)?,
            duration_ms: r.try_get(1)?,
            status_code: r.try_get(2)?,
            error: r.try_get(3)?,
            response_body: r.try_get(4)?,
        })
    })
    .collect()
}

impl Postgres {
    pub async fn delivery(&self, account_id: i64, id: i64) -> Result<DeliveryRecord, ApiError> {
        let mut client = self.client().await?;
        // One snapshot for the delivery and its attempts: read apart, an attempt recorded in
        // between would be listed but not counted.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut delivery = row_opt(
            &tx,
            &format!("SELECT {COLUMNS} FROM deliveries WHERE id = $1 AND account_id = $2"),
            &[&id, &account_id],
        )
        .await?
        .map(|r| delivery_record(&r))
        .unwrap_or(Err(ApiError::DeliveryNotFound))?;
        delivery.attempts = Some(attempts(&tx, id).await?);
        tx.commit().await?;
        Ok(delivery)
    }

    pub async fn search_deliveries(
        &self,
        account_id: i64,
        criteria: Criteria,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<DeliveryRecord>, ApiError> {
        let client = self.client().await?;
        super::filter::search(
            &client,
            COLUMNS,
            FROM,
            account_id,
            &criteria,
            (limit, offset),
        )
        .await?
        .iter()
        .map(delivery_record)
        .collect()
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
        let mut leading = Bound::default();
        leading.push(Box::new(account_id));
        leading.push(Box::new(now_ms()));
        // The rows are locked in id order, as every writer of many deliveries locks them
        // (a record may be writing some of them: a cancelled delivery's late answer).
        let head = format!(
            "UPDATE deliveries d SET status = 'pending', due_ms = $2,
               schedule_start = attempt_count, final_time = NULL
             FROM (SELECT id FROM deliveries
                   WHERE account_id = $1 AND status IN ({statuses})
                     AND webhook_id IN
                       (SELECT id FROM webhooks WHERE is_active AND deleted_time IS NULL)"
        );
        let tail = format!(
            " ORDER BY id FOR NO KEY UPDATE) picked
             WHERE d.id = picked.id AND d.status IN ({statuses})"
        );
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let queued = super::filter::update(&tx, (&head, &tail), leading, &criteria).await?;
        tx.commit().await?;
        if queued > 0 {
            self.work_queued();
        }
        Ok(queued as i64)
    }

    /// `retryDelivery`: a failed or cancelled delivery is due again now, with a fresh run of
    /// the retry schedule. Its webhook must still exist and be active.
    pub async fn retry_delivery(&self, account_id: i64, id: i64) -> Result<(), ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let found = row_opt(
            &tx,
            "SELECT d.status, w.is_active AND w.deleted_time IS NULL
             FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.id = $1 AND d.account_id = $2 FOR NO KEY UPDATE OF d",
            &[&id, &account_id],
        )
        .await?
        .ok_or(ApiError::DeliveryNotFound)?;
        let (status, active): (String, bool) = (found.try_get(0)?, found.try_get(1)?);
        crate::store::check_retryable(&status, active)?;
        exec(
            &tx,
            "UPDATE deliveries SET status = 'pending', due_ms = $2, schedule_start = attempt_count,
               final_time = NULL
             WHERE id = $1",
            &[&id, &now_ms()],
        )
        .await?;
        tx.commit().await?;
        self.work_queued();
        Ok(())
    }
}
