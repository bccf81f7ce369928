//! Recording what an attempt came to on PostgreSQL: one attempt for every delivery the request
//! carried, what comes next for each, what the webhook's circuit learns, and the operational
//! events all that tells the account, in one transaction on the engine's connections. The same
//! rules as SQLite's `record.rs`, in PostgreSQL's SQL.

use super::{exec, row, rows, Postgres};
use crate::error::ApiError;
use crate::model::{now_ms, CircuitPolicy, Outcome};
use crate::store::operational::{self, FailedDelivery};
use crate::store::rules::{self, AfterFailure, Failure, Settled, WebhookNow};
use deadpool_postgres::GenericClient;

/// Records an attempt, and publishes what it tells the account (operational events) in the
/// same transaction; returns whether that queued deliveries.
async fn record(
    c: &impl GenericClient,
    o: &Outcome,
    circuit: CircuitPolicy,
) -> Result<bool, ApiError> {
    // Every writer takes a webhook's row before its deliveries (failures, edits, deletes, an
    // open circuit's claim), so that no two wait for each other in a cycle. A failure locks
    // the row first: failures of one webhook (from any node) are recorded one at a time. A
    // success takes no lock up front, so successes of one webhook are recorded side by side:
    // it writes the row (when something changes) before its deliveries, and one that finds
    // the circuit open locks the row before closing it.
    // If the webhook was moved to another url while the request was out, the answer speaks
    // for the old url only (see SQLite's `record` for the whole reasoning).
    let status_code = o.status_code.map(i64::from);
    let ids: Vec<i64> = o.next.iter().map(|(id, _)| *id).collect();
    // A delivery cancelled while the request was out may have been removed by retention
    // meanwhile (a retention shorter than the attempt): it gets no link. (A link's foreign-key
    // check holds its delivery from then to the commit, so retention waits for this one.)
    let attempted = async {
        exec(
            c,
            "WITH attempt AS (
               INSERT INTO attempts (webhook_id, time, duration_ms, status_code, error, response_body)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id)
             INSERT INTO delivery_attempts (delivery_id, attempt_id)
             SELECT d.id, attempt.id FROM deliveries d, attempt WHERE d.id = ANY($7)",
            &[
                &o.webhook_id,
                &o.time,
                &o.duration_ms,
                &status_code,
                &o.error,
                &o.response_body,
                &ids,
            ],
        )
        .await
    };
    // Sent together (pipelined): answered in about one round trip instead of two.
    let lock = o.error.is_some();
    let (mut was, _) = tokio::try_join!(webhook_now(c, o.webhook_id, lock), attempted)?;
    if !lock && was.circuit_open {
        was = webhook_now(c, o.webhook_id, true).await?; // a success that may close it
    }
    let moved = was.url != o.url;
    let settled = Settled::of(o, moved, now_ms());
    let (ids, statuses, dues) = (&settled.ids, &settled.statuses, &settled.dues);
    let failed = still_pending(c, &settled.failing()).await?;
    // The attempt counts for every delivery it carried, but only a pending one moves on: one
    // cancelled while it was in flight (its webhook deleted, deactivated or gone) stays so. A
    // delivery that becomes final notes when (retention counts from then).
    let moved_on = async {
        exec(
            c,
            "UPDATE deliveries d SET
               status = CASE WHEN d.status = 'pending' THEN v.status ELSE d.status END,
               due_ms = CASE WHEN d.status = 'pending' THEN v.due ELSE d.due_ms END,
               final_time = CASE WHEN d.status = 'pending' AND v.status <> 'pending' THEN $4
                 ELSE d.final_time END,
               attempt_count = d.attempt_count + 1,
               last_attempt_time = $4, last_status_code = $5, last_error = $6
             FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS v(id, status, due)
             WHERE d.id = v.id",
            &[ids, statuses, dues, &o.time, &status_code, &o.error],
        )
        .await
    };
    let counted = super::stats::count_attempt(c, was.account_id, o.webhook_id, &settled.tally);
    let noted = async {
        match o.error.is_none() && !moved {
            true => note_success(c, o).await,
            false => Ok(()),
        }
    };
    // These do not depend on one another: sent together, answered in about one round trip,
    // and run in the order sent (the webhook's row before the deliveries', once each statement
    // is prepared on this connection; a rare cycle before that costs a deadlock retry).
    tokio::try_join!(noted, moved_on, counted)?;
    // What the webhook learns comes after: opening a circuit or a deactivation moves the
    // webhook's other pending deliveries, and must see these ones settled first.
    let (after, closed) = match &o.error {
        _ if !rules::speaks_for(&was, o) => (None, false),
        None => (None, record_success(c, o, &was).await?),
        Some(error) => (
            Some(record_failure(c, o, error, &was, circuit).await?),
            false,
        ),
    };
    let told = operational::told(
        o.webhook_id,
        &was,
        o.error.as_deref(),
        &failed,
        after.as_ref(),
        closed,
    );
    if told.is_empty() {
        return Ok(false);
    }
    // An event is told to receivers, which keep its id: its commit must reach the disk first
    // (lost in a crash of the database server, its id could be given again to another).
    exec(c, "SET LOCAL synchronous_commit = on", &[]).await?;
    super::events::publish(c, was.account_id, &told).await
}

/// The webhook as an outcome finds it, its row locked when `lock`.
async fn webhook_now(
    c: &impl GenericClient,
    webhook_id: i64,
    lock: bool,
) -> Result<WebhookNow, ApiError> {
    const SELECT: &str = "SELECT account_id, url, consecutive_failures, circuit_state,
        circuit_opened_time, is_active AND deleted_time IS NULL, activated_ms
        FROM webhooks WHERE id = $1";
    let sql = match lock {
        true => format!("{SELECT} FOR NO KEY UPDATE"),
        false => SELECT.to_owned(),
    };
    let found = row(c, &sql, &[&webhook_id]).await?;
    Ok(WebhookNow {
        account_id: found.try_get(0)?,
        url: found.try_get(1)?,
        is_active: found.try_get(5)?,
        consecutive_failures: found.try_get(2)?,
        circuit_open: found.try_get::<_, &str>(3)? == "open",
        circuit_opened_time: found.try_get(4)?,
        activated_ms: found.try_get(6)?,
    })
}

/// Of the deliveries `ids` about to be made final, those still pending (one cancelled while its
/// request was out stays cancelled, and is not told about as failed), with their events; their
/// rows stay locked until the commit.
async fn still_pending(
    c: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<FailedDelivery>, ApiError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    rows(
        c,
        "SELECT d.id, d.event_id, e.object FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.id = ANY($1) AND d.status = 'pending' ORDER BY d.id FOR NO KEY UPDATE OF d",
        &[&ids],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(FailedDelivery {
            delivery_id: r.try_get(0)?,
            event_id: r.try_get(1)?,
            object: r.try_get(2)?,
        })
    })
    .collect()
}

/// A success from a webhook whose circuit is closed: it has no failures any more, and its last
/// success is now. Only when that changes something (a row lock held to the commit would make
/// every success of the webhook wait for the one before it), and never on an open circuit,
/// which only [`record_success`] closes (so that a closing is told exactly once).
async fn note_success(c: &impl GenericClient, o: &Outcome) -> Result<(), ApiError> {
    exec(
        c,
        "UPDATE webhooks SET last_success_time = $2, consecutive_failures = 0
         WHERE id = $1 AND circuit_state = 'closed'
           AND (last_success_time IS DISTINCT FROM $2 OR consecutive_failures <> 0)",
        &[&o.webhook_id, &o.time],
    )
    .await?;
    Ok(())
}

/// A success on an open circuit (its webhook's row locked by `record`) closes it, and what it
/// held back is due at once. (The statements go one after the other: the first reads the
/// `next_probe_ms` that the next clears.) Returns whether it closed the circuit.
async fn record_success(
    c: &impl GenericClient,
    o: &Outcome,
    was: &WebhookNow,
) -> Result<bool, ApiError> {
    if !was.circuit_open {
        return Ok(false); // `note_success` did it all
    }
    exec(
        c,
        "UPDATE deliveries SET due_ms = $2
         WHERE webhook_id = $1 AND status = 'pending' AND due_ms > $2
           AND due_ms <= (SELECT next_probe_ms FROM webhooks WHERE id = $1)",
        &[&o.webhook_id, &now_ms()],
    )
    .await?;
    let closed = exec(
        c,
        "UPDATE webhooks SET last_success_time = $2, consecutive_failures = 0,
           circuit_state = 'closed', next_probe_ms = NULL, circuit_opened_time = NULL
         WHERE id = $1 AND circuit_state = 'open'",
        &[&o.webhook_id, &o.time],
    )
    .await?;
    Ok(closed == 1)
}

/// A failure counts against the webhook: it may open its circuit or deactivate it (see
/// [`rules::after_failure`]); returns which. The webhook's row is locked (by `webhook_now`),
/// so `was` is what this failure follows.
async fn record_failure(
    c: &impl GenericClient,
    o: &Outcome,
    error: &str,
    was: &WebhookNow,
    circuit: CircuitPolicy,
) -> Result<AfterFailure, ApiError> {
    let f = Failure::of(was, o, error, circuit);
    exec(
        c,
        "UPDATE webhooks SET last_error_time = $2, last_error_message = $3,
           consecutive_failures = consecutive_failures + 1,
           is_active = CASE WHEN $4 THEN false ELSE is_active END,
           circuit_opened_time = CASE WHEN $5 AND circuit_state = 'closed' THEN $2
             ELSE circuit_opened_time END,
           circuit_state = CASE WHEN $5 THEN 'open' ELSE circuit_state END,
           next_probe_ms = CASE WHEN $5 THEN $6 ELSE next_probe_ms END
         WHERE id = $1",
        &[
            &o.webhook_id,
            &o.time,
            &f.message,
            &f.deactivate,
            &f.probe_ms.is_some(),
            &f.probe_ms,
        ],
    )
    .await?;
    if f.deactivate {
        super::webhooks::cancel_pending(c, o.webhook_id).await?;
    } else if let Some(probe_ms) = f.probe_ms {
        // Open (or kept open): everything waits for the next probe.
        exec(
            c,
            "UPDATE deliveries SET due_ms = $2
             WHERE webhook_id = $1 AND status = 'pending' AND due_ms < $2",
            &[&o.webhook_id, &probe_ms],
        )
        .await?;
    }
    Ok(f.after)
}

impl Postgres {
    /// Records one attempt for all the deliveries it carried, and what the webhook learnt.
    pub async fn record_outcome(
        &self,
        outcome: Outcome,
        circuit: CircuitPolicy,
    ) -> Result<(), ApiError> {
        let queued = super::retry_on_deadlock(|| async {
            let mut client = self.engine_client().await?;
            let tx = client.transaction().await?;
            let queued = record(&tx, &outcome, circuit).await?;
            tx.commit().await?;
            Ok(queued)
        })
        .await?;
        if queued {
            self.work_queued();
        }
        Ok(())
    }
}
