//! `addEvent` and `addEvents` calls without idempotency keys, gathered (see `gather.rs`): the
//! calls that arrive while earlier ones are being written go in together, their events and
//! deliveries in one statement and one commit, for any number of accounts. Each call is still
//! answered after the commit that holds its events. Calls with idempotency keys lock their
//! keys in a transaction of their own (`events.rs`).

use super::gather::{self, Inbox, Limits};
use super::Postgres;
use crate::error::ApiError;
use crate::model::NewEvent;
use tokio::sync::{mpsc, oneshot};

/// A call's events, and who waits for their ids.
pub(super) struct Call {
    pub account_id: i64,
    pub events: Vec<NewEvent>,
    pub done: oneshot::Sender<Result<Vec<i64>, ApiError>>,
}

pub(super) type Intake = Inbox<Call>;

/// Starts writing what `pg`'s intake is handed.
pub(super) fn start(pg: Postgres, calls: mpsc::UnboundedReceiver<Call>) {
    let limits = Limits {
        // A third of the API's connections, so that other calls always find one.
        at_once: 4,
        most: 1000,
        weight: |call: &Call| call.events.len(),
    };
    gather::gather(calls, limits, move |batch| {
        let pg = pg.clone();
        async move { write(&pg, batch).await }
    });
}

/// Writes gathered calls in one statement. If the server refuses it (so nothing was written),
/// each call is written on its own, so that a call fails only for itself; any other failure
/// (a connection lost, perhaps after the commit) is every call's answer, as it would be
/// each one's alone: writing them again could publish their events twice.
async fn write(pg: &Postgres, calls: Vec<Call>) {
    let all: Vec<(i64, &NewEvent)> = calls
        .iter()
        .flat_map(|call| call.events.iter().map(|e| (call.account_id, e)))
        .collect();
    match pg.publish_new(&all).await {
        Ok(ids) => {
            let mut ids = ids.into_iter();
            for call in calls {
                let own = ids.by_ref().take(call.events.len()).collect();
                drop(call.done.send(Ok(own)));
            }
        }
        Err(e) if calls.len() > 1 && super::refused(&e) => {
            tracing::debug!(error = %e, "postgres: publishing calls together refused; one by one");
            for call in calls {
                let own: Vec<(i64, &NewEvent)> =
                    call.events.iter().map(|e| (call.account_id, e)).collect();
                let written = pg.publish_new(&own).await;
                drop(call.done.send(written));
            }
        }
        Err(e) => {
            let why = super::cause(e);
            for call in calls {
                drop(call.done.send(Err(ApiError::Internal(why.clone()))));
            }
        }
    }
}

impl Postgres {
    /// Hands a call's events to the intake; returns their ids once committed.
    pub(super) async fn gathered_publish(
        &self,
        account_id: i64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<i64>, ApiError> {
        let (done, published) = oneshot::channel();
        let stopped = || ApiError::Internal("postgres: the intake has stopped".into());
        let call = Call {
            account_id,
            events,
            done,
        };
        self.intake.send(call).map_err(|_| stopped())?;
        published.await.map_err(|_| stopped())?
    }
}
