//! `getDeliveryStats` on PostgreSQL: the same counts as SQLite's `stats.rs`, kept in the
//! transaction that records each attempt, and read as sums per bucket and latency class.

use super::{row, rows, Postgres};
use crate::error::ApiError;
use crate::model::{AttemptTally, StatsCell, StatsQuery, STATS_SPANS};
use deadpool_postgres::GenericClient;

/// The account's own rows (the sums over all its webhooks) are spread over this many rows per
/// period and class, `webhook_id` -1 to -SHARDS, each webhook adding to one of them: a single
/// row would be locked by every attempt of the account until its commit, and recording
/// would go one attempt at a time across all the account's webhooks. A question about the
/// account sums the shards (and `webhook_id` 0, SQLite's single account row, which
/// `hookrpc migrate` copies as it is).
const ACCOUNT_SHARDS: i64 = 16;

/// The account row `webhook_id` adds to.
fn account_shard(webhook_id: i64) -> i64 {
    -1 - webhook_id.rem_euclid(ACCOUNT_SHARDS)
}

/// Adds one attempt to the rows of its webhook and of its account, for each span.
pub(super) async fn count_attempt(
    c: &impl GenericClient,
    webhook_id: i64,
    tally: &AttemptTally,
) -> Result<(), ApiError> {
    let account_id: i64 = row(
        c,
        "SELECT account_id FROM webhooks WHERE id = $1",
        &[&webhook_id],
    )
    .await?
    .try_get(0)?;
    let (webhooks, (spans, starts)): (Vec<i64>, (Vec<i64>, Vec<i64>)) = STATS_SPANS
        .iter()
        .flat_map(|&span| {
            let start = tally.time - tally.time.rem_euclid(span);
            [
                (webhook_id, (span, start)),
                (account_shard(webhook_id), (span, start)),
            ]
        })
        .unzip();
    rows(
        c,
        "INSERT INTO attempt_stats AS s (account_id, webhook_id, span, start, latency_class,
           attempts, succeeded, retried, failed)
         SELECT $1, w, span, start, $5, 1, $6, $7, $8
         FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS r(w, span, start)
         ON CONFLICT (account_id, webhook_id, span, start, latency_class) DO UPDATE SET
           attempts = s.attempts + 1,
           succeeded = s.succeeded + excluded.succeeded,
           retried = s.retried + excluded.retried,
           failed = s.failed + excluded.failed",
        &[
            &account_id,
            &webhooks,
            &spans,
            &starts,
            &tally.latency_class,
            &tally.succeeded,
            &tally.retried,
            &tally.failed,
        ],
    )
    .await?;
    Ok(())
}

impl Postgres {
    /// The sums of the rows of the account (or of one of its webhooks) for `query.span`
    /// starting in `from..until`, per bucket of `interval` and latency class.
    pub async fn delivery_stats(
        &self,
        account_id: i64,
        query: StatsQuery,
    ) -> Result<Vec<StatsCell>, ApiError> {
        let q = query;
        // One webhook's rows, or the account's (its shards and a copied row 0).
        let (low, high) = match q.webhook_id {
            Some(id) => (id, id),
            None => (-ACCOUNT_SHARDS, 0),
        };
        rows(
            &self.client().await?,
            "SELECT (start - $4) / $6 AS bucket, latency_class,
               sum(attempts)::bigint, sum(succeeded)::bigint, sum(retried)::bigint,
               sum(failed)::bigint
             FROM attempt_stats
             WHERE account_id = $1 AND webhook_id BETWEEN $2 AND $7 AND span = $3
               AND start >= $4 AND start < $5
             GROUP BY bucket, latency_class",
            &[
                &account_id,
                &low,
                &q.span,
                &q.from,
                &q.until,
                &q.interval,
                &high,
            ],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(StatsCell {
                bucket: r.try_get(0)?,
                latency_class: r.try_get(1)?,
                attempts: r.try_get(2)?,
                succeeded: r.try_get(3)?,
                retried: r.try_get(4)?,
                failed: r.try_get(5)?,
            })
        })
        .collect()
    }
}
