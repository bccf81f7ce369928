//! `getDeliveryStats`: the contract's defaults and limits, and the buckets built from the
//! store's sums. The store counts attempts per minute and per hour as they are recorded; here a
//! question becomes a period of those rows, and their latency classes become percentiles.

use super::{reply, App, Json};
use crate::error::ApiError;
use crate::model::{now_secs, Caller, StatsBucket, StatsCell, StatsQuery};
use crate::validate::{Args, Checker};
use std::sync::Arc;

/// Most buckets one call returns (API.md §3).
pub const MAX_BUCKETS: i64 = 1000;
const DAY: i64 = 86_400;
const DEFAULT_INTERVAL: i64 = 3600;
/// The longest interval: a year. Anything longer says nothing a year would not.
const MAX_INTERVAL: i64 = 365 * DAY;
/// The latest time taken (the last second of year 9999), which keeps every sum in range.
const MAX_TIME: i64 = 253_402_300_799;

/// `getDeliveryStats`: attempts by outcome and latency, one bucket per interval.
pub async fn get(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    check: Checker,
) -> Result<Json, ApiError> {
    let (query, count) = stats_query(&args, check)?;
    if let Some(id) = query.webhook_id {
        app.store.webhook(caller.account_id, id).await?; // 350 unless it is the account's
    }
    let cells = app.store.delivery_stats(caller.account_id, query).await?;
    reply(&buckets(&query, count, &cells))
}

/// The params as a query of the store, and how many buckets it answers with. The store counts
/// in minutes and hours, so `since` is taken back to the start of its minute (or of its hour,
/// when `interval` is whole hours) and `interval` must be whole minutes.
fn stats_query(args: &Args, mut check: Checker) -> Result<(StatsQuery, i64), ApiError> {
    let webhook_id = check
        .opt_int("webhook_id", args.get("webhook_id"), 0, i64::MAX)
        .unwrap_or(0);
    let until = check.opt_int("until", args.get("until"), 0, MAX_TIME);
    let since = check.opt_int("since", args.get("since"), 0, MAX_TIME);
    let interval = check
        .opt_int("interval", args.get("interval"), 60, MAX_INTERVAL)
        .unwrap_or(DEFAULT_INTERVAL);
    if interval % 60 != 0 {
        check.problem(
            "interval",
            "must be a whole number of minutes (a multiple of 60)",
        );
    }
    let (since, until) = period(since, until, now_secs());
    if since >= until {
        check.problem("until", "must be later than since");
    }
    check.finish()?;
    let span = if interval % 3600 == 0 { 3600 } else { 60 };
    let from = since - since.rem_euclid(span);
    let count = (until - from + interval - 1) / interval;
    if count > MAX_BUCKETS {
        return Err(ApiError::invalid(
            "interval",
            format!(
                "from since to until makes {count} buckets of {interval} s; at most \
                 {MAX_BUCKETS}: choose a longer interval or a shorter period"
            ),
        ));
    }
    let webhook_id = (webhook_id != 0).then_some(webhook_id);
    let query = StatsQuery {
        webhook_id,
        span,
        from,
        until,
        interval,
    };
    Ok((query, count))
}

/// The period `since..until` asked for, with the contract's defaults at `now`: until now, and
/// since a day before that. The store counts the minutes (or hours) that start before `until`,
/// and an attempt is stamped with its whole second: "now" is the end of the current second, so
/// that an attempt recorded in it counts even when that second starts a minute.
fn period(since: Option<i64>, until: Option<i64>, now: i64) -> (i64, i64) {
    let until = until.unwrap_or(now + 1);
    (since.unwrap_or((until - DAY).max(0)), until)
}

/// `count` buckets from `query.from`, each with the sums of its cells and the percentiles of
/// its latency classes.
fn buckets(query: &StatsQuery, count: i64, cells: &[StatsCell]) -> Vec<StatsBucket> {
    let mut classes: Vec<Vec<(i64, i64)>> = vec![Vec::new(); count as usize];
    let mut buckets: Vec<StatsBucket> = (0..count)
        .map(|i| StatsBucket {
            time: query.from + i * query.interval,
            succeeded: 0,
            failed: 0,
            retried: 0,
            attempts: 0,
            p50_ms: None,
            p99_ms: None,
        })
        .collect();
    for cell in cells {
        let Some(bucket) = buckets.get_mut(cell.bucket as usize) else {
            continue; // the store was asked for rows inside the buckets only
        };
        bucket.succeeded += cell.succeeded;
        bucket.failed += cell.failed;
        bucket.retried += cell.retried;
        bucket.attempts += cell.attempts;
        classes[cell.bucket as usize].push((cell.latency_class, cell.attempts));
    }
    for (bucket, mut histogram) in buckets.iter_mut().zip(classes) {
        histogram.sort_unstable();
        bucket.p50_ms = percentile(&histogram, bucket.attempts, 50);
        bucket.p99_ms = percentile(&histogram, bucket.attempts, 99);
    }
    buckets
}

/// The class holding the `pct`-th percentile of `total` attempts (nearest rank), from
/// `(class, attempts)` sorted by class; None without attempts.
fn percentile(histogram: &[(i64, i64)], total: i64, pct: i64) -> Option<i64> {
    let rank = ((total * pct + 99) / 100).max(1);
    let mut seen = 0;
    histogram.iter().find_map(|&(class, attempts)| {
        seen += attempts;
        (seen >= rank).then_some(class)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let histogram = [(5, 98), (40, 1), (900, 1)];
        assert_eq!(percentile(&histogram, 100, 50), Some(5));
        assert_eq!(percentile(&histogram, 100, 99), Some(40));
        assert_eq!(percentile(&histogram, 100, 100), Some(900));
        assert_eq!(percentile(&[(7, 1)], 1, 99), Some(7));
        assert_eq!(percentile(&[], 0, 50), None);
    }

    /// An attempt is stamped with the second it was recorded in. Asked right after, in the same
    /// second, the first of a minute, the default period ended before it: the attempt was not
    /// counted (a test of `tests/stats.rs` failed about once in sixty runs).
    #[test]
    fn the_default_period_counts_what_was_recorded_in_the_current_second() {
        let now = 1_764_000_000; // the first second of an hour and of a minute
        let (since, until) = period(None, None, now);
        assert!(since < now && now < until, "{since}..{until}");
        assert_eq!(until - since, DAY);
        assert_eq!(
            period(Some(5), Some(9), now),
            (5, 9),
            "given, they are kept"
        );
    }

    #[test]
    fn cells_are_summed_into_their_buckets() {
        let query = StatsQuery {
            webhook_id: None,
            span: 60,
            from: 600,
            until: 900,
            interval: 120,
        };
        let cell = |bucket, latency_class, attempts| StatsCell {
            bucket,
            latency_class,
            attempts,
            succeeded: attempts,
            retried: 1,
            failed: 0,
        };
        let got = buckets(&query, 3, &[cell(0, 10, 3), cell(0, 2, 1), cell(2, 50, 2)]);
        let times: Vec<_> = got.iter().map(|b| b.time).collect();
        assert_eq!(times, [600, 720, 840]);
        assert_eq!(
            (got[0].attempts, got[0].succeeded, got[0].retried),
            (4, 4, 2)
        );
        assert_eq!((got[0].p50_ms, got[0].p99_ms), (Some(10), Some(10)));
        assert_eq!((got[1].attempts, got[1].p50_ms), (0, None));
        assert_eq!(got[2].p99_ms, Some(50));
    }
}
