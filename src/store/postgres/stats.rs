//! `getDeliveryStats` on PostgreSQL: the same counts as SQLite's `stats.rs` (four rows of
//! `attempt_stats` per attempt: its webhook's and its account's, webhook 0, for the minute and
//! the hour), but written in two steps. Recording attempts appends rows to `attempt_stats_log`
//! in its transaction, which never waits for another (one row per webhook, second and latency
//! class among the attempts it records); about every second a node folds the log into
//! `attempt_stats`. A question reads both, so an attempt counts as soon as it is recorded, as
//! on SQLite.

use super::{exec, rows, Postgres};
use crate::error::ApiError;
use crate::model::{AttemptTally, StatsCell, StatsQuery, STATS_SPANS};
use deadpool_postgres::{GenericClient, Pool};
use std::time::Duration;

/// How often the log is folded into `attempt_stats`.
const FOLD_EVERY: Duration = Duration::from_secs(1);

/// Appends recorded attempts to the log (their accounts, webhooks and tallies), in the
/// transaction that records them: one statement, whatever their number, and one row for the
/// attempts that share a webhook, a second and a latency class.
pub(super) async fn count_attempts(
    c: &impl GenericClient,
    counted: &[(i64, i64, &AttemptTally)],
) -> Result<(), ApiError> {
    let column = |f: fn(&(i64, i64, &AttemptTally)) -> i64| counted.iter().map(f).collect();
    let (accounts, webhooks, times): (Vec<i64>, Vec<i64>, Vec<i64>) =
        (column(|c| c.0), column(|c| c.1), column(|c| c.2.time));
    let (classes, succeeded, retried, failed): (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>) = (
        column(|c| c.2.latency_class),
        column(|c| c.2.succeeded),
        column(|c| c.2.retried),
        column(|c| c.2.failed),
    );
    exec(
        c,
        "INSERT INTO attempt_stats_log (account_id, webhook_id, time, latency_class,
           attempts, succeeded, retried, failed)
         SELECT account_id, webhook_id, time, latency_class, count(*), sum(succeeded),
           sum(retried), sum(failed)
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $7::bigint[])
           AS t(account_id, webhook_id, time, latency_class, succeeded, retried, failed)
         GROUP BY account_id, webhook_id, time, latency_class",
        &[
            &accounts, &webhooks, &times, &classes, &succeeded, &retried, &failed,
        ],
    )
    .await?;
    Ok(())
}

/// Moves every committed log row into `attempt_stats`: each adds to its webhook's and its
/// account's rows for the minute and the hour. One node folds at a time (the others skip their
/// turn); the rows it does not see yet (uncommitted) wait for the next fold.
async fn fold(c: &impl GenericClient) -> Result<(), ApiError> {
    exec(
        c,
        "WITH turn AS (SELECT pg_try_advisory_xact_lock(hashtext('hookrpc stats fold')) AS mine),
         moved AS (
           DELETE FROM attempt_stats_log WHERE (SELECT mine FROM turn) RETURNING *),
         counted AS (
           SELECT m.account_id, w.webhook_id, s.span, m.time - m.time % s.span AS start,
                  m.latency_class, m.attempts, m.succeeded, m.retried, m.failed
           FROM moved m
           CROSS JOIN unnest($1::bigint[]) AS s(span)
           CROSS JOIN LATERAL (VALUES (m.webhook_id), (0::bigint)) AS w(webhook_id))
         INSERT INTO attempt_stats AS a (account_id, webhook_id, span, start, latency_class,
           attempts, succeeded, retried, failed)
         SELECT account_id, webhook_id, span, start, latency_class, sum(attempts),
                sum(succeeded), sum(retried), sum(failed)
         FROM counted GROUP BY account_id, webhook_id, span, start, latency_class
         ORDER BY account_id, webhook_id, span, start, latency_class
         ON CONFLICT (account_id, webhook_id, span, start, latency_class) DO UPDATE SET
           attempts = a.attempts + excluded.attempts,
           succeeded = a.succeeded + excluded.succeeded,
           retried = a.retried + excluded.retried,
           failed = a.failed + excluded.failed",
        &[&STATS_SPANS.as_slice()],
    )
    .await?;
    Ok(())
}

/// Folds the log into `attempt_stats` about every second, for as long as the node runs.
pub(super) async fn fold_forever(pool: Pool) {
    let mut tick = tokio::time::interval(FOLD_EVERY);
    loop {
        tick.tick().await;
        let folded = async {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            fold(&tx).await?;
            tx.commit().await?;
            Ok::<_, ApiError>(())
        };
        if let Err(e) = folded.await {
            tracing::warn!(error = %e, "postgres: folding delivery statistics failed; trying again");
        }
    }
}

impl Postgres {
    /// The sums of the rows of the account (webhook 0) or of one of its webhooks for
    /// `query.span` starting in `from..until`, per bucket of `interval` and latency class,
    /// with what the log holds that was not folded in yet.
    pub async fn delivery_stats(
        &self,
        account_id: i64,
        query: StatsQuery,
    ) -> Result<Vec<StatsCell>, ApiError> {
        let q = query;
        let webhook = q.webhook_id.unwrap_or(0);
        rows(
            &self.client().await?,
            "SELECT (start - $4) / $6 AS bucket, latency_class,
               sum(attempts)::bigint, sum(succeeded)::bigint, sum(retried)::bigint,
               sum(failed)::bigint
             FROM (
               SELECT start, latency_class, attempts, succeeded, retried, failed
               FROM attempt_stats
               WHERE account_id = $1 AND webhook_id = $2 AND span = $3
                 AND start >= $4 AND start < $5
               UNION ALL
               SELECT time - time % $3, latency_class, attempts, succeeded, retried, failed
               FROM attempt_stats_log
               WHERE account_id = $1 AND ($2 = 0 OR webhook_id = $2)
                 AND time - time % $3 >= $4 AND time - time % $3 < $5
             ) counted
             GROUP BY bucket, latency_class",
            &[
                &account_id,
                &webhook,
                &q.span,
                &q.from,
                &q.until,
                &q.interval,
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
