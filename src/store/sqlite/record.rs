//! Recording what an attempt came to on SQLite: one attempt for every delivery the request
//! carried, what comes next for each, what the webhook's circuit learns, and the operational
//! events all that tells the account, in one write.

use super::Sqlite;
use crate::error::ApiError;
use crate::model::{now_ms, CircuitPolicy, Outcome};
use crate::store::operational::{self, FailedDelivery};
use crate::store::rules::{self, AfterFailure, Failure, Recorded, Settled, WebhookNow};
use rusqlite::{params, Connection, OptionalExtension};

/// Records an attempt, and publishes what it tells the account (operational events) in the
/// same transaction; returns whether that queued deliveries (closing a circuit makes the
/// deliveries that waited for it due now).
fn record(conn: &Connection, o: &Outcome, circuit: CircuitPolicy) -> Result<Recorded, ApiError> {
    conn.prepare_cached(
        "INSERT INTO attempts (webhook_id, time, duration_ms, status_code, error, response_body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        o.webhook_id,
        o.time,
        o.duration_ms,
        o.status_code,
        o.error,
        o.response_body
    ])?;
    let attempt_id = conn.last_insert_rowid();
    // A delivery cancelled while the request was out may have been removed by retention
    // meanwhile (a retention shorter than the attempt): it gets no link.
    let mut link = conn.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, attempt_id)
         SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = ?1)",
    )?;
    // The attempt counts for every delivery it carried, but only a pending one moves on, and
    // one cancelled while it was in flight (its webhook deleted, deactivated or gone) only if
    // the receiver took it: it `succeeded` (the receiver has it; left `cancelled`, a
    // `retryDeliveries` of cancelled ones would send it twice). Otherwise it stays cancelled,
    // with no retry scheduled. A delivery that becomes final notes when (retention counts from
    // then).
    let mut update = conn.prepare_cached(
        "UPDATE deliveries SET
           status = CASE WHEN status = 'pending' OR (status = 'cancelled' AND ?2 = 'succeeded')
             THEN ?2 ELSE status END,
           due_ms = CASE WHEN status = 'pending' THEN ?3 ELSE due_ms END,
           final_time = CASE WHEN status = 'pending' AND ?2 <> 'pending' THEN ?4
             WHEN status = 'cancelled' AND ?2 = 'succeeded' THEN ?4 ELSE final_time END,
           attempt_count = attempt_count + 1,
           last_attempt_time = ?4, last_status_code = ?5, last_error = ?6
         WHERE id = ?1",
    )?;
    // The webhook was moved to another url while the request was out: the answer speaks for
    // the old url only. A 410 there asks nothing of the new one, so what it failed is due
    // again at once (at the new url), and the webhook's own record (its circuit, failures,
    // activity) is left to answers from its current url.
    let was = webhook_now(conn, o.webhook_id)?;
    let moved = was.url != o.url;
    let settled = Settled::of(o, moved, now_ms());
    let mut failed = Vec::new();
    for id in settled.failing() {
        failed.extend(still_pending(conn, id)?);
    }
    let each = settled.ids.iter().zip(&settled.statuses).zip(&settled.dues);
    for ((id, status), due) in each {
        link.execute(params![id, attempt_id])?;
        update.execute(params![id, status, due, o.time, o.status_code, o.error])?;
    }
    super::stats::count_attempt(conn, o.webhook_id, &settled.tally)?;
    let (after, closed) = match &o.error {
        _ if !rules::speaks_for(&was, o) => (None, false),
        None => (None, record_success(conn, o, &was)?),
        Some(error) => (Some(record_failure(conn, o, error, &was, circuit)?), false),
    };
    let told = operational::told(o, &was, &failed, after.as_ref(), closed);
    let queued = super::events::publish(conn, was.account_id, &told)? || closed;
    Ok(Recorded::of(after.as_ref(), queued))
}

fn webhook_now(conn: &Connection, webhook_id: i64) -> Result<WebhookNow, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT account_id, url, consecutive_failures, circuit_state, circuit_opened_time,
               is_active AND deleted_time IS NULL, activation
             FROM webhooks WHERE id = ?1",
        )?
        .query_row([webhook_id], |r| {
            Ok(WebhookNow {
                account_id: r.get(0)?,
                url: r.get(1)?,
                is_active: r.get(5)?,
                consecutive_failures: r.get(2)?,
                circuit_open: r.get_ref(3)?.as_str()? == "open",
                circuit_opened_time: r.get(4)?,
                activation: r.get(6)?,
            })
        })?)
}

/// A delivery about to be made final, with its event, if it is still pending (one cancelled
/// while its request was out stays cancelled, and is not told about as failed).
fn still_pending(conn: &Connection, id: i64) -> Result<Option<FailedDelivery>, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT d.event_id, e.object FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.id = ?1 AND d.status = 'pending'",
        )?
        .query_row([id], |r| {
            Ok(FailedDelivery {
                delivery_id: id,
                event_id: r.get(0)?,
                object: r.get(1)?,
            })
        })
        .optional()?)
}

/// A success closes the circuit, and what it held back is due at once, not at the probe that
/// would have come next. Held-back work waits with its due time at the webhook's next probe.
/// While a circuit is open only its probe is in flight, and this outcome has just settled the
/// probe's deliveries (a batch sent before the circuit opened is long done: an attempt's
/// timeout is shorter than the probe interval in any sane setting). Returns whether it closed
/// an open circuit.
fn record_success(conn: &Connection, o: &Outcome, was: &WebhookNow) -> Result<bool, ApiError> {
    conn.prepare_cached(
        "UPDATE deliveries SET due_ms = ?2
         WHERE webhook_id = ?1 AND status = 'pending' AND due_ms > ?2
           AND due_ms <= (SELECT next_probe_ms FROM webhooks WHERE id = ?1)",
    )?
    .execute(params![o.webhook_id, now_ms()])?;
    conn.prepare_cached(
        "UPDATE webhooks SET last_success_time = ?2, consecutive_failures = 0,
           circuit_state = 'closed', next_probe_ms = NULL, circuit_opened_time = NULL
         WHERE id = ?1",
    )?
    .execute(params![o.webhook_id, o.time])?;
    Ok(was.circuit_open)
}

/// A failure counts against the webhook: it may open its circuit or deactivate it (see
/// [`rules::after_failure`]); returns which.
fn record_failure(
    conn: &Connection,
    o: &Outcome,
    error: &str,
    was: &WebhookNow,
    circuit: CircuitPolicy,
) -> Result<AfterFailure, ApiError> {
    let f = Failure::of(was, o, error, circuit);
    conn.prepare_cached(
        "UPDATE webhooks SET last_error_time = ?2, last_error_message = ?3,
           consecutive_failures = consecutive_failures + 1,
           is_active = CASE WHEN ?4 THEN 0 ELSE is_active END,
           circuit_opened_time = CASE WHEN ?5 AND circuit_state = 'closed' THEN ?2
             ELSE circuit_opened_time END,
           circuit_state = CASE WHEN ?5 THEN 'open' ELSE circuit_state END,
           next_probe_ms = CASE WHEN ?5 THEN ?6 ELSE next_probe_ms END
         WHERE id = ?1",
    )?
    .execute(params![
        o.webhook_id,
        o.time,
        f.message,
        f.deactivate,
        f.probe_ms.is_some(),
        f.probe_ms
    ])?;
    if f.deactivate {
        super::webhooks::cancel_pending(conn, o.webhook_id)?;
    } else if let Some(probe_ms) = f.probe_ms {
        // Open (or kept open): everything waits for the next probe.
        conn.prepare_cached(
            "UPDATE deliveries SET due_ms = ?2 WHERE webhook_id = ?1 AND status = 'pending' AND due_ms < ?2",
        )?
        .execute(params![o.webhook_id, probe_ms])?;
    }
    Ok(f.after)
}

impl Sqlite {
    /// Records one attempt for all the deliveries it carried, and what the webhook learnt.
    pub async fn record_outcome(
        &self,
        outcome: Outcome,
        circuit: CircuitPolicy,
    ) -> Result<bool, ApiError> {
        let recorded = self
            .write(move |conn| record(conn, &outcome, circuit))
            .await?;
        if recorded.queued {
            self.waker.wake();
        }
        Ok(recorded.deactivated)
    }
}
