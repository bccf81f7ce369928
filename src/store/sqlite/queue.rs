//! The delivery engine's queue on SQLite: claim due work with a lease, record what each
//! attempt came to (and what its webhook's circuit learns), hand back what was not sent.

use super::Sqlite;
use crate::error::ApiError;
use crate::model::{
    now_ms, now_secs, BasicAuth, CircuitPolicy, Claim, ClaimedDelivery, Outcome, Room, Target,
    WireItem,
};
use crate::store::operational::{self, FailedDelivery};
use crate::store::rules::{self, AfterFailure, WebhookNow};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;
use std::collections::HashSet;

struct ClaimedRow {
    id: i64,
    webhook_id: i64,
    event_id: i64,
    attempts_in_schedule: i64,
}

struct WebhookState {
    target: Target,
    batch_size: usize,
    open: bool,
    next_probe_ms: Option<i64>,
    deleted: bool,
}

fn webhook_state(conn: &Connection, id: i64, now_ms: i64) -> Result<WebhookState, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT url, headers, auth_username, auth_password, secret, previous_secret,
               previous_secret_until, batch_size, circuit_state, next_probe_ms, deleted_time,
               account_id
             FROM webhooks WHERE id = ?1",
        )?
        .query_row([id], |r| {
            let mut secrets = vec![r.get::<_, String>(4)?];
            if let (Some(old), Some(until)) =
                (r.get::<_, Option<String>>(5)?, r.get::<_, Option<i64>>(6)?)
            {
                if until * 1000 > now_ms {
                    secrets.push(old);
                }
            }
            let auth = match (
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ) {
                (Some(username), Some(password)) => Some(BasicAuth { username, password }),
                _ => None,
            };
            Ok(WebhookState {
                target: Target {
                    webhook_id: id,
                    account_id: r.get(11)?,
                    url: r.get(0)?,
                    headers: serde_json::from_str(&r.get::<_, String>(1)?).unwrap_or_default(),
                    auth,
                    secrets,
                },
                batch_size: r.get::<_, i64>(7)?.max(1) as usize,
                open: r.get::<_, String>(8)? == "open",
                next_probe_ms: r.get(9)?,
                deleted: r.get::<_, Option<i64>>(10)?.is_some(),
            })
        })?)
}

fn wire_item(conn: &Connection, row: &ClaimedRow) -> Result<Box<RawValue>, ApiError> {
    let mut stmt = conn.prepare_cached(
        "SELECT object, event, list_id, contact_id, creation_time, data FROM events WHERE id = ?1",
    )?;
    let mut rows = stmt.query([row.event_id])?;
    let r = rows
        .next()?
        .ok_or_else(|| ApiError::Internal(format!("delivery {} lost its event", row.id)))?;
    let item = WireItem {
        id: row.event_id,
        delivery_id: row.id,
        webhook_id: row.webhook_id,
        object: r.get_ref(0)?.as_str()?,
        event: r.get_ref(1)?.as_str()?,
        list_id: r.get(2)?,
        contact_id: r.get(3)?,
        timestamp: r.get(4)?,
        // Stored by us, so always JSON; were a row ever damaged, its item still goes out (with
        // null data) rather than failing every claim that reaches it.
        data: serde_json::from_str(r.get_ref(5)?.as_str()?).unwrap_or(RawValue::NULL),
    };
    Ok(serde_json::value::to_raw_value(&item)?)
}

/// Moves pending deliveries' due time (deferring, or handing back a claim).
fn set_due(
    conn: &Connection,
    ids: impl IntoIterator<Item = i64>,
    due_ms: i64,
) -> Result<(), ApiError> {
    let mut stmt = conn
        .prepare_cached("UPDATE deliveries SET due_ms = ?2 WHERE id = ?1 AND status = 'pending'")?;
    for id in ids {
        stmt.execute(params![id, due_ms])?;
    }
    Ok(())
}

/// Claims up to `limit` due deliveries, oldest first, one webhook at a time and at most the
/// batches it has `room` for (no more could be sent at once), so a burst fanned out to many
/// webhooks goes out in full batches to many of them at once. Each is leased by moving its due
/// time to the end of the lease, so a crash leaves work that falls due again. Deliveries of an
/// open circuit wait for its next probe; when a probe is due, one batch goes out as the probe.
/// Webhooks without room (as many batches in hand as they may send) are passed by.
fn claim(
    conn: &Connection,
    limit: usize,
    room: &Room,
    lease_ms: i64,
    circuit: CircuitPolicy,
) -> Result<Vec<Claim>, ApiError> {
    let now = now_ms();
    let mut claims = Vec::new();
    let mut claimed = 0;
    let mut visited = HashSet::new();
    let mut from = (i64::MIN, i64::MIN);
    while claimed < limit {
        let Some((due_ms, webhook_id)) = next_due_webhook(conn, now, from)? else {
            break;
        };
        from = (due_ms, webhook_id + 1);
        let fits = room.batches(webhook_id);
        if !visited.insert(webhook_id) || fits == 0 {
            continue; // busy, or more of its work, due later: it had its share
        }
        let state = webhook_state(conn, webhook_id, now)?;
        if state.deleted {
            super::webhooks::cancel_pending(conn, webhook_id)?;
            continue;
        }
        let share = rules::share(
            state.batch_size,
            fits,
            limit - claimed,
            (state.open, state.next_probe_ms),
            now,
        );
        let (take, probe_due) = (share.count, share.probe_due);
        let rows = claim_rows(conn, webhook_id, now, now + lease_ms, take)?;
        if let Some(probe_due) = probe_due {
            wait_for_probe(conn, &state, now, probe_due, circuit)?;
        }
        claimed += rows.len();
        claims.extend(batches(conn, &state, rows)?);
    }
    Ok(claims)
}

/// The rest of an open circuit's due work waits for its next probe (after the one going out
/// now, if `probe_due`).
fn wait_for_probe(
    conn: &Connection,
    state: &WebhookState,
    now: i64,
    probe_due: bool,
    circuit: CircuitPolicy,
) -> Result<(), ApiError> {
    let webhook_id = state.target.webhook_id;
    let next_probe = if probe_due {
        let next = now + circuit.probe_interval_ms;
        conn.prepare_cached("UPDATE webhooks SET next_probe_ms = ?2 WHERE id = ?1")?
            .execute(params![webhook_id, next])?;
        next
    } else {
        state.next_probe_ms.unwrap_or(now)
    };
    conn.prepare_cached(
        "UPDATE deliveries SET due_ms = ?3
         WHERE webhook_id = ?1 AND status = 'pending' AND due_ms <= ?2",
    )?
    .execute(params![webhook_id, now, next_probe])?;
    Ok(())
}

/// The first (due time, webhook) with work due by `now`, at or after `from` in that order.
/// (`>=` with the next webhook id, not `>` with this one: SQLite seeks to the start of a
/// row-value range but would step through every delivery equal to its end one by one.)
fn next_due_webhook(
    conn: &Connection,
    now: i64,
    from: (i64, i64),
) -> Result<Option<(i64, i64)>, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT due_ms, webhook_id FROM deliveries
             WHERE status = 'pending' AND due_ms <= ?1 AND (due_ms, webhook_id) >= (?2, ?3)
             ORDER BY due_ms, webhook_id LIMIT 1",
        )?
        .query_row(params![now, from.0, from.1], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Leases up to `count` of a webhook's due deliveries, oldest first.
fn claim_rows(
    conn: &Connection,
    webhook_id: i64,
    now: i64,
    lease_end: i64,
    count: usize,
) -> Result<Vec<ClaimedRow>, ApiError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut rows = conn
        .prepare_cached(
            "UPDATE deliveries SET due_ms = ?3 WHERE id IN
               (SELECT id FROM deliveries WHERE webhook_id = ?1 AND status = 'pending'
                  AND due_ms <= ?2 ORDER BY due_ms, id LIMIT ?4)
             RETURNING id, event_id, attempt_count - schedule_start",
        )?
        .query_map(params![webhook_id, now, lease_end, count as i64], |r| {
            Ok(ClaimedRow {
                id: r.get(0)?,
                webhook_id,
                event_id: r.get(1)?,
                attempts_in_schedule: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.sort_by_key(|r| r.id); // RETURNING gives no order
    Ok(rows)
}

/// A webhook's claimed rows as requests of up to `batch_size` items each.
fn batches(
    conn: &Connection,
    state: &WebhookState,
    rows: Vec<ClaimedRow>,
) -> Result<Vec<Claim>, ApiError> {
    rows.chunks(state.batch_size)
        .map(|chunk| {
            let deliveries = chunk
                .iter()
                .map(|row| {
                    Ok(ClaimedDelivery {
                        id: row.id,
                        attempts_in_schedule: row.attempts_in_schedule,
                        item: wire_item(conn, row)?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            Ok(Claim {
                target: state.target.clone(),
                deliveries,
            })
        })
        .collect()
}

/// Records an attempt, and publishes what it tells the account (operational events) in the
/// same transaction; returns whether that queued deliveries.
fn record(conn: &Connection, o: &Outcome, circuit: CircuitPolicy) -> Result<bool, ApiError> {
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
    // The attempt counts for every delivery it carried, but only a pending one moves on: one
    // cancelled while it was in flight (its webhook deleted, deactivated or gone) stays so. A
    // delivery that becomes final notes when (retention counts from then).
    let mut update = conn.prepare_cached(
        "UPDATE deliveries SET
           status = CASE WHEN status = 'pending' THEN ?2 ELSE status END,
           due_ms = CASE WHEN status = 'pending' THEN ?3 ELSE due_ms END,
           final_time = CASE WHEN status = 'pending' AND ?2 <> 'pending' THEN ?4 ELSE final_time END,
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
    let mut tally = rules::attempt_tally(o);
    let mut failed = Vec::new();
    for (id, next) in &o.next {
        link.execute(params![id, attempt_id])?;
        let (status, due) = rules::settle(next, moved, o.deactivate, now_ms());
        rules::tally(&mut tally, status);
        if status == "failed" {
            failed.extend(still_pending(conn, *id)?);
        }
        update.execute(params![id, status, due, o.time, o.status_code, o.error])?;
    }
    super::stats::count_attempt(conn, o.webhook_id, &tally)?;
    let (after, closed) = match &o.error {
        _ if moved => (None, false),
        None => (None, record_success(conn, o, &was)?),
        Some(error) => (Some(record_failure(conn, o, error, &was, circuit)?), false),
    };
    let told = operational::told(
        o.webhook_id,
        &was,
        o.error.as_deref(),
        &failed,
        after.as_ref(),
        closed,
    );
    super::events::publish(conn, was.account_id, &told)
}

fn webhook_now(conn: &Connection, webhook_id: i64) -> Result<WebhookNow, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT account_id, url, consecutive_failures, circuit_state, circuit_opened_time,
               is_active
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
    let after = rules::after_failure(was, o.deactivate, circuit, o.time);
    let deactivate = matches!(after, AfterFailure::Deactivate { .. });
    let open = matches!(after, AfterFailure::Open { .. });
    // Open (or keep open) the circuit: everything waits for the next probe.
    let probe_ms = now_ms() + circuit.probe_interval_ms;
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
        rules::failure_message(error, &after),
        deactivate,
        open,
        probe_ms
    ])?;
    if deactivate {
        super::webhooks::cancel_pending(conn, o.webhook_id)?;
    } else if open {
        conn.prepare_cached(
            "UPDATE deliveries SET due_ms = ?2 WHERE webhook_id = ?1 AND status = 'pending' AND due_ms < ?2",
        )?
        .execute(params![o.webhook_id, probe_ms])?;
    }
    Ok(after)
}

impl Sqlite {
    /// The engine's claim (see [`claim`]).
    pub async fn claim_due(
        &self,
        limit: usize,
        room: Room,
        lease_ms: i64,
        circuit: CircuitPolicy,
    ) -> Result<Vec<Claim>, ApiError> {
        self.write(move |conn| claim(conn, limit, &room, lease_ms, circuit))
            .await
    }

    /// Records one attempt for all the deliveries it carried, and what the webhook learnt.
    pub async fn record_outcome(
        &self,
        outcome: Outcome,
        circuit: CircuitPolicy,
    ) -> Result<(), ApiError> {
        let queued = self
            .write(move |conn| record(conn, &outcome, circuit))
            .await?;
        if queued {
            self.waker.wake();
        }
        Ok(())
    }

    /// Claimed deliveries that were not sent are due again now (graceful shutdown).
    pub async fn release(&self, ids: Vec<i64>) -> Result<(), ApiError> {
        self.write(move |conn| set_due(conn, ids, now_ms())).await
    }

    /// When the earliest pending delivery due after `after` (epoch ms) falls due, if any.
    pub async fn next_due_ms(&self, after: i64) -> Result<Option<i64>, ApiError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT min(due_ms) FROM deliveries WHERE status = 'pending' AND due_ms > ?1",
                )?
                .query_row([after], |r| r.get(0))?)
        })
        .await
    }

    /// For /metrics: pending deliveries, the age of the oldest (s), open circuits.
    pub async fn queue_stats(&self) -> Result<(i64, i64, i64), ApiError> {
        self.read(|conn| {
            let (pending, oldest): (i64, Option<i64>) = conn
                .prepare_cached("SELECT count(*), min(creation_time) FROM deliveries WHERE status = 'pending'")?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let open: i64 = conn
                .prepare_cached("SELECT count(*) FROM webhooks WHERE circuit_state = 'open' AND deleted_time IS NULL")?
                .query_row([], |r| r.get(0))?;
            Ok((pending, oldest.map_or(0, |t| now_secs() - t), open))
        })
        .await
    }
}
