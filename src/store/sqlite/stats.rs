//! `getDeliveryStats` on SQLite: each recorded attempt adds to its webhook's rows of
//! `attempt_stats` (one per span), and a question sums the rows of its period per bucket and
//! latency class. The API turns those sums into buckets and percentiles.

use super::Sqlite;
use crate::error::ApiError;
use crate::model::{AttemptTally, StatsCell, StatsQuery, STATS_SPANS};
use rusqlite::{params, Connection};

/// Adds one attempt to its webhook's row of each span, in the transaction that records it.
pub(super) fn count_attempt(
    conn: &Connection,
    webhook_id: i64,
    tally: &AttemptTally,
) -> Result<(), ApiError> {
    let mut add = conn.prepare_cached(
        "INSERT INTO attempt_stats
           (webhook_id, span, start, latency_class, attempts, succeeded, retried, failed)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7)
         ON CONFLICT (webhook_id, span, start, latency_class) DO UPDATE SET
           attempts = attempts + 1,
           succeeded = succeeded + excluded.succeeded,
           retried = retried + excluded.retried,
           failed = failed + excluded.failed",
    )?;
    for span in STATS_SPANS {
        add.execute(params![
            webhook_id,
            span,
            tally.time - tally.time.rem_euclid(span),
            tally.latency_class,
            tally.succeeded,
            tally.retried,
            tally.failed
        ])?;
    }
    Ok(())
}

impl Sqlite {
    /// The sums of the account's (or one of its webhooks') rows of `query.span` starting in
    /// `from..until`, per bucket of `interval` and latency class. Reads one index range per
    /// webhook: rows of the period only, never the deliveries themselves.
    pub async fn delivery_stats(
        &self,
        account_id: i64,
        query: StatsQuery,
    ) -> Result<Vec<StatsCell>, ApiError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT (start - ?3) / ?5 AS bucket, latency_class,
                   sum(attempts), sum(succeeded), sum(retried), sum(failed)
                 FROM attempt_stats
                 WHERE webhook_id IN
                     (SELECT id FROM webhooks WHERE account_id = ?1 AND (?2 IS NULL OR id = ?2))
                   AND span = ?6 AND start >= ?3 AND start < ?4
                 GROUP BY bucket, latency_class",
            )?;
            let q = query;
            let cells = stmt.query_map(
                params![
                    account_id,
                    q.webhook_id,
                    q.from,
                    q.until,
                    q.interval,
                    q.span
                ],
                |r| {
                    Ok(StatsCell {
                        bucket: r.get(0)?,
                        latency_class: r.get(1)?,
                        attempts: r.get(2)?,
                        succeeded: r.get(3)?,
                        retried: r.get(4)?,
                        failed: r.get(5)?,
                    })
                },
            )?;
            Ok(cells.collect::<Result<_, _>>()?)
        })
        .await
    }
}
