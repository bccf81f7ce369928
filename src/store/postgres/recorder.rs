//! The engine's records on PostgreSQL, gathered. Outcomes that arrive while earlier ones are
//! being written wait, and go in together: the plain ones (a success from a webhook whose
//! circuit is closed, sent to the url it still has: nearly every outcome of a healthy
//! webhook) in one transaction for all of them, whatever their number; each other one (a
//! failure, a success that closes a circuit, an answer from an old url, an outcome whose
//! record is tried again) in a transaction of its own, since it may lock its webhook and tell
//! its account of a change (`record.rs`). One transaction per outcome cost PostgreSQL about as
//! much CPU as the rest of a delivery together (BENCHMARKS.md, issue 10); see `gather.rs`.

use super::gather::{self, Inbox, Limits};
use super::Postgres;
use crate::error::ApiError;
use crate::model::{CircuitPolicy, Outcome};
use std::collections::BTreeMap;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// An outcome to record, and who waits for its record.
pub(super) struct Job {
    outcome: Outcome,
    circuit: CircuitPolicy,
    /// Whether the record turned the webhook off.
    done: oneshot::Sender<Result<bool, ApiError>>,
}

pub(super) type Recorder = Inbox<Job>;

/// Starts recording what `pg`'s recorder is handed.
pub(super) fn start(pg: Postgres, jobs: mpsc::UnboundedReceiver<Job>) {
    let limits = Limits {
        // One batch at a time, so that a node's batches commit in the order their outcomes
        // were handed in: a webhook's success must not commit before an earlier batch's
        // failure of it, which would leave the webhook failing after it answered. (Batches of
        // outcomes are seldom full, so a second writer would seldom start anyway.) Not
        // ordered: an outcome whose record failed and is tried again later, and outcomes
        // recorded by other nodes.
        at_once: 1,
        most: 500,
        weight: |_| 1,
    };
    gather::gather(jobs, limits, move |batch| {
        let pg = pg.clone();
        async move { write(&pg, batch).await }
    });
}

/// Writes a batch: the plain successes together, then the other outcomes, each in a
/// transaction of its own: one webhook's in the order they were answered, different webhooks'
/// side by side. (A webhook with a failure in the batch has no plain success in it, see
/// [`Postgres::record_successes`]: a success answered after the failure must be written after
/// it, or the webhook would be left failing.) If the server refuses to write them together
/// (so nothing was written), each is written on its own, and fails on its own; any other
/// failure (a connection lost, perhaps after the commit) is every outcome's answer: the engine
/// tries each again while its lease lasts, as it would a lone one.
async fn write(pg: &Postgres, batch: Vec<Job>) {
    let outcomes: Vec<&Outcome> = batch.iter().map(|job| &job.outcome).collect();
    let recorded = match pg.record_successes(&outcomes).await {
        Ok(recorded) => recorded,
        Err(e) if super::refused(&e) => {
            tracing::debug!(error = %e, "postgres: recording outcomes together refused; one by one");
            vec![false; batch.len()]
        }
        Err(e) => {
            let why = super::cause(e);
            for job in batch {
                drop(job.done.send(Err(ApiError::Internal(why.clone()))));
            }
            return;
        }
    };
    // The batch is in the order the outcomes were handed in (the order of their answers, but
    // for answers that come within moments of each other): each webhook's rest keeps it.
    let mut rest: BTreeMap<i64, Vec<Job>> = BTreeMap::new();
    for (job, recorded) in batch.into_iter().zip(recorded) {
        if recorded {
            drop(job.done.send(Ok(false))); // a plain success turns nothing off
        } else {
            rest.entry(job.outcome.webhook_id).or_default().push(job);
        }
    }
    let mut webhooks = JoinSet::new();
    for (_, jobs) in rest {
        let pg = pg.clone();
        webhooks.spawn(async move {
            for job in jobs {
                let result = pg.record_one(&job.outcome, job.circuit).await;
                drop(job.done.send(result));
            }
        });
    }
    while webhooks.join_next().await.is_some() {}
}

impl Postgres {
    /// Records one attempt for all the deliveries it carried, and what the webhook learnt,
    /// together with the other outcomes that arrive meanwhile (see the module's documentation).
    pub async fn record_outcome(
        &self,
        outcome: Outcome,
        circuit: CircuitPolicy,
    ) -> Result<bool, ApiError> {
        let (done, recorded) = oneshot::channel();
        let stopped = || ApiError::Internal("postgres: the recorder has stopped".into());
        self.recorder
            .send(Job {
                outcome,
                circuit,
                done,
            })
            .map_err(|_| stopped())?;
        recorded.await.map_err(|_| stopped())?
    }
}
