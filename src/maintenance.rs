//! Retention in the background (`--retention`): passes over finished history, each a series of
//! small batches (store/retention.rs says what a batch removes), with a pause after each batch
//! as long as the batch took, so that removal never takes more than about half of the
//! database's time and calls and delivery waiting behind a batch go first. Every node runs
//! passes; on PostgreSQL one batch at a time runs in the cluster.

use crate::config::Retention;
use crate::error::ApiError;
use crate::metrics;
use crate::model::now_secs;
use crate::store::retention::Removed;
use crate::store::Store;
use rand::Rng;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The shortest pause between two batches.
const MIN_PAUSE: Duration = Duration::from_millis(10);
/// Passes are this far apart at most: under a month's retention, a minute's delay is nothing,
/// and an idle pass costs a few index lookups.
const MOST_BETWEEN_PASSES: Duration = Duration::from_secs(60);

/// Starts removing what `retention` no longer keeps; nothing for `--retention 0`.
pub fn start(store: Store, retention: Retention) -> Option<JoinHandle<()>> {
    let keep = retention.0?;
    Some(tokio::spawn(run(store, keep)))
}

async fn run(store: Store, keep: Duration) {
    let every = (keep / 10).clamp(Duration::from_secs(1), MOST_BETWEEN_PASSES);
    loop {
        // Nodes of a cluster started together drift apart instead of meeting at each pass.
        let jitter = rand::thread_rng().gen_range(0.9..1.1);
        tokio::time::sleep(every.mul_f64(jitter)).await;
        let cutoff = now_secs() - keep.as_secs() as i64;
        match pass(&store, cutoff).await {
            Ok(removed) => {
                metrics::retention_pass_done(now_secs());
                if removed != Removed::default() {
                    tracing::info!(
                        events = removed.events,
                        deliveries = removed.deliveries,
                        attempts = removed.attempts,
                        webhooks = removed.webhooks,
                        "retention removed finished history"
                    );
                }
            }
            // The next pass starts over; what this one removed stays removed.
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
    }
}

/// One pass: events (with their deliveries and attempts) whose deliveries all became final
/// before `cutoff`, then webhooks deleted before it that nothing refers to any more.
async fn pass(store: &Store, cutoff: i64) -> Result<Removed, ApiError> {
    let mut total = Removed::default();
    let mut after = 0;
    loop {
        let started = Instant::now();
        let step = store.remove_expired(after, cutoff).await?;
        total += counted(step.removed);
        let Some(next) = step.next_after else {
            break;
        };
        after = next;
        breathe(started).await;
    }
    loop {
        let started = Instant::now();
        let removed = counted(store.remove_deleted_webhooks(cutoff).await?);
        total += removed;
        if removed.webhooks == 0 {
            return Ok(total);
        }
        breathe(started).await;
    }
}

fn counted(removed: Removed) -> Removed {
    metrics::retention_removed(&removed);
    removed
}

async fn breathe(batch_started: Instant) {
    tokio::time::sleep(batch_started.elapsed().max(MIN_PAUSE)).await;
}
