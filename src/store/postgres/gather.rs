//! Gathering: work that arrives while earlier work is being written waits, and goes in
//! together, in one transaction of set-based statements. On PostgreSQL a transaction of one
//! row costs about as much CPU as its statements' rows together: a delivery of one event was
//! three such transactions (its event, its claim, its record), and gathering the first and
//! the last made it several times cheaper (BENCHMARKS.md, issue 10). Nothing waits on
//! purpose: a lone piece of work is written at once; only what arrives while every writer is
//! busy is gathered.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};

/// Where work is handed in to be gathered.
pub(super) type Inbox<J> = mpsc::UnboundedSender<J>;

/// How gathered work is written.
pub(super) struct Limits<J> {
    /// Gathered batches being written at once: while they all are, the next ones gather.
    pub at_once: usize,
    /// The most a batch may weigh (a piece heavier than this goes alone)...
    pub most: usize,
    /// ...by this weight.
    pub weight: fn(&J) -> usize,
}

/// An inbox, and what starts its gathering once the writer exists (the writer may hold the
/// inbox itself).
pub(super) fn inbox<J>() -> (Inbox<J>, mpsc::UnboundedReceiver<J>) {
    mpsc::unbounded_channel()
}

/// Gathers what arrives in `jobs` into batches within `limits`, and writes each with `write`,
/// for as long as the inbox is open.
pub(super) fn gather<J, F, Fut>(mut jobs: mpsc::UnboundedReceiver<J>, limits: Limits<J>, write: F)
where
    J: Send + 'static,
    F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let turns = Arc::new(Semaphore::new(limits.at_once));
        let mut carried: Option<J> = None;
        loop {
            let Ok(turn) = turns.clone().acquire_owned().await else {
                return;
            };
            let first = match carried.take() {
                Some(job) => job,
                None => match jobs.recv().await {
                    Some(job) => job,
                    None => return,
                },
            };
            let mut weight = (limits.weight)(&first);
            let mut batch = vec![first];
            while let Ok(job) = jobs.try_recv() {
                weight += (limits.weight)(&job);
                if weight > limits.most {
                    carried = Some(job); // it starts the next batch
                    break;
                }
                batch.push(job);
            }
            let written = write(batch);
            tokio::spawn(async move {
                written.await;
                drop(turn);
            });
        }
    });
}
