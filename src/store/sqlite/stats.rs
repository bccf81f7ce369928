//! `getDeliveryStats` on SQLite: each recorded attempt adds to rows of `attempt_stats` (its
//! webhook's and its account's, one per span), and a question sums the rows of its period per
//! bucket and latency class. The API turns those sums into buckets and percentiles.

use super::Sqlite;
use crate::error::ApiError;
use crate::model::{AttemptTally, StatsCell, StatsQuery, STATS_SPANS};
use rusqlite::{params, Connection};

/// The `webhook_id` of an account's own rows: the sums over all its webhooks, deleted ones
/// included, so an account-wide question reads one set of rows however many webhooks it has.
const ACCOUNT_ROW: i64 = 0;

/// Adds one attempt to the rows of its webhook and of its account, for each span, in the
/// transaction that records it.
pub(super) fn count_attempt(
    conn: &Connection,
    webhook_id: i64,
    tally: &AttemptTally,
) -> Result<(), ApiError> {
    let account_id: i64 = conn
        .prepare_cached("SELECT account_id FROM webhooks WHERE id = ?1")?
        .query_row([webhook_id], |r| r.get(0))?;
    let mut add = conn.prepare_cached(
        "INSERT INTO attempt_stats (account_id, webhook_id, span, start, latency_class,
           attempts, succeeded, retried, failed)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8)
         ON CONFLICT (account_id, webhook_id, span, start, latency_class) DO UPDATE SET
           attempts = attempts + 1,
           succeeded = succeeded + excluded.succeeded,
           retried = retried + excluded.retried,
           failed = failed + excluded.failed",
    )?;
    for span in STATS_SPANS {
        for row in [webhook_id, ACCOUNT_ROW] {
            add.execute(params![
                account_id,
                row,
                span,
                tally.time - tally.time.rem_euclid(span),
                tally.latency_class,
                tally.succeeded,
                tally.retried,
                tally.failed
            ])?;
        }
    }
    Ok(())
}

impl Sqlite {
    /// The sums of the rows of the account (or of one of its webhooks) for `query.span`
    /// starting in `from..until`, per bucket of `interval` and latency class: one index range.
    pub async fn delivery_stats(
        &self,
        account_id: i64,
        query: StatsQuery,
    ) -> Result<Vec<StatsCell>, ApiError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT (start - ?4) / ?6 AS bucket, latency_class,
                   sum(attempts), sum(succeeded), sum(retried), sum(failed)
                 FROM attempt_stats
                 WHERE account_id = ?1 AND webhook_id = ?2 AND span = ?3
                   AND start >= ?4 AND start < ?5
                 GROUP BY bucket, latency_class",
            )?;
            let q = query;
            let row = q.webhook_id.unwrap_or(ACCOUNT_ROW);
            let cells = stmt.query_map(
                params![account_id, row, q.span, q.from, q.until, q.interval],
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
