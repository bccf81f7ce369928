//! The delivery engine's queue on PostgreSQL, shared by every node: claim due work with a
//! lease (`FOR NO KEY UPDATE SKIP LOCKED`, so one delivery is in one node's hands at a time), record
//! what each attempt came to (and what its webhook's circuit learns), hand back what was not
//! sent. The same rules as SQLite's `queue.rs`, in PostgreSQL's SQL.

use super::{exec, notify_work, row, row_opt, rows, Postgres};
use crate::error::ApiError;
use crate::model::{
    now_ms, now_secs, BasicAuth, CircuitPolicy, Claim, ClaimedDelivery, Outcome, Room, Target,
    WireItem,
};
use crate::store::rules;
use deadpool_postgres::GenericClient;
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet};
use tokio_postgres::Row;

struct ClaimedRow {
    id: i64,
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

fn webhook_state(r: &Row, id: i64, now_ms: i64) -> Result<WebhookState, ApiError> {
    let mut secrets = vec![r.try_get::<_, String>(4)?];
    if let (Some(old), Some(until)) = (
        r.try_get::<_, Option<String>>(5)?,
        r.try_get::<_, Option<i64>>(6)?,
    ) {
        if until * 1000 > now_ms {
            secrets.push(old);
        }
    }
    let auth = match (r.try_get(2)?, r.try_get(3)?) {
        (Some(username), Some(password)) => Some(BasicAuth { username, password }),
        _ => None,
    };
    Ok(WebhookState {
        target: Target {
            webhook_id: id,
            account_id: r.try_get(11)?,
            url: r.try_get(0)?,
            headers: serde_json::from_str(r.try_get(1)?).unwrap_or_default(),
            auth,
            secrets,
        },
        batch_size: r.try_get::<_, i64>(7)?.max(1) as usize,
        open: r.try_get::<_, &str>(8)? == "open",
        next_probe_ms: r.try_get(9)?,
        deleted: r.try_get::<_, Option<i64>>(10)?.is_some(),
    })
}

/// A webhook's state for a claim. An open circuit's row is locked (skipped if another node
/// holds it), so only one node decides on its probe.
async fn load_state(
    c: &impl GenericClient,
    id: i64,
    now_ms: i64,
    lock: bool,
) -> Result<Option<WebhookState>, ApiError> {
    let sql = format!(
        "SELECT url, headers, auth_username, auth_password, secret, previous_secret,
           previous_secret_until, batch_size, circuit_state, next_probe_ms, deleted_time,
           account_id
         FROM webhooks WHERE id = $1{}",
        if lock {
            " FOR NO KEY UPDATE SKIP LOCKED"
        } else {
            ""
        }
    );
    row_opt(c, &sql, &[&id])
        .await?
        .map(|r| webhook_state(&r, id, now_ms))
        .transpose()
}

/// The wire items of claimed rows, in their order.
async fn wire_items(
    c: &impl GenericClient,
    webhook_id: i64,
    claimed: &[ClaimedRow],
) -> Result<Vec<ClaimedDelivery>, ApiError> {
    let event_ids: Vec<i64> = claimed.iter().map(|r| r.event_id).collect();
    let events: HashMap<i64, Row> = rows(
        c,
        "SELECT id, object, event, list_id, contact_id, creation_time, data
         FROM events WHERE id = ANY($1)",
        &[&event_ids],
    )
    .await?
    .into_iter()
    .map(|r| Ok((r.try_get(0)?, r)))
    .collect::<Result<_, ApiError>>()?;
    claimed
        .iter()
        .map(|row| {
            let r = events
                .get(&row.event_id)
                .ok_or_else(|| ApiError::Internal(format!("delivery {} lost its event", row.id)))?;
            let item = WireItem {
                id: row.event_id,
                delivery_id: row.id,
                webhook_id,
                object: r.try_get(1)?,
                event: r.try_get(2)?,
                list_id: r.try_get(3)?,
                contact_id: r.try_get(4)?,
                timestamp: r.try_get(5)?,
                // Stored by us, so always JSON; were a row ever damaged, its item still goes
                // out (with null data) rather than failing every claim that reaches it.
                data: serde_json::from_str(r.try_get(6)?).unwrap_or(RawValue::NULL),
            };
            Ok(ClaimedDelivery {
                id: row.id,
                attempts_in_schedule: row.attempts_in_schedule,
                item: serde_json::value::to_raw_value(&item)?,
            })
        })
        .collect()
}

/// Claims up to `limit` due deliveries, oldest first, one webhook at a time and at most the
/// batches it has `room` for, as SQLite's claim does. Rows another node has locked are
/// skipped, not waited for: they are in its hands.
async fn claim(
    c: &impl GenericClient,
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
        let Some((due_ms, webhook_id)) = next_due_webhook(c, now, from).await? else {
            break;
        };
        from = (due_ms, webhook_id + 1);
        let fits = room.batches(webhook_id);
        if !visited.insert(webhook_id) || fits == 0 {
            continue; // busy, or more of its work, due later: it had its share
        }
        let Some(mut state) = load_state(c, webhook_id, now, false).await? else {
            continue;
        };
        if state.deleted {
            super::webhooks::cancel_pending(c, webhook_id).await?;
            continue;
        }
        if state.open {
            match load_state(c, webhook_id, now, true).await? {
                Some(locked) => state = locked,
                None => continue, // another node is deciding on its probe
            }
        }
        let share = rules::share(
            state.batch_size,
            fits,
            limit - claimed,
            (state.open, state.next_probe_ms),
            now,
        );
        let (take, probe_due) = (share.count, share.probe_due);
        let rows = claim_rows(c, webhook_id, now, now + lease_ms, take).await?;
        if let Some(probe_due) = probe_due {
            wait_for_probe(c, &state, now, probe_due, circuit).await?;
        }
        claimed += rows.len();
        for chunk in rows.chunks(state.batch_size) {
            claims.push(Claim {
                target: state.target.clone(),
                deliveries: wire_items(c, webhook_id, chunk).await?,
            });
        }
    }
    Ok(claims)
}

/// The rest of an open circuit's due work waits for its next probe (after the one going out
/// now, if `probe_due`).
async fn wait_for_probe(
    c: &impl GenericClient,
    state: &WebhookState,
    now: i64,
    probe_due: bool,
    circuit: CircuitPolicy,
) -> Result<(), ApiError> {
    let webhook_id = state.target.webhook_id;
    let next_probe = if probe_due {
        let next = now + circuit.probe_interval_ms;
        exec(
            c,
            "UPDATE webhooks SET next_probe_ms = $2 WHERE id = $1",
            &[&webhook_id, &next],
        )
        .await?;
        next
    } else {
        state.next_probe_ms.unwrap_or(now)
    };
    exec(
        c,
        "UPDATE deliveries SET due_ms = $3
         WHERE webhook_id = $1 AND status = 'pending' AND due_ms <= $2",
        &[&webhook_id, &now, &next_probe],
    )
    .await?;
    Ok(())
}

/// The first (due time, webhook) with work due by `now`, at or after `from` in that order.
async fn next_due_webhook(
    c: &impl GenericClient,
    now: i64,
    from: (i64, i64),
) -> Result<Option<(i64, i64)>, ApiError> {
    row_opt(
        c,
        "SELECT due_ms, webhook_id FROM deliveries
         WHERE status = 'pending' AND due_ms <= $1 AND (due_ms, webhook_id) >= ($2, $3)
         ORDER BY due_ms, webhook_id LIMIT 1",
        &[&now, &from.0, &from.1],
    )
    .await?
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .transpose()
}

/// Leases up to `count` of a webhook's due deliveries, oldest first, that no other node holds.
async fn claim_rows(
    c: &impl GenericClient,
    webhook_id: i64,
    now: i64,
    lease_end: i64,
    count: usize,
) -> Result<Vec<ClaimedRow>, ApiError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut claimed = rows(
        c,
        "UPDATE deliveries SET due_ms = $3 WHERE id IN
           (SELECT id FROM deliveries WHERE webhook_id = $1 AND status = 'pending'
              AND due_ms <= $2 ORDER BY due_ms, id LIMIT $4 FOR NO KEY UPDATE SKIP LOCKED)
         RETURNING id, event_id, attempt_count - schedule_start",
        &[&webhook_id, &now, &lease_end, &(count as i64)],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ClaimedRow {
            id: r.try_get(0)?,
            event_id: r.try_get(1)?,
            attempts_in_schedule: r.try_get(2)?,
        })
    })
    .collect::<Result<Vec<_>, ApiError>>()?;
    claimed.sort_by_key(|r| r.id); // RETURNING gives no order
    Ok(claimed)
}

async fn record(
    c: &impl GenericClient,
    o: &Outcome,
    circuit: CircuitPolicy,
) -> Result<(), ApiError> {
    // A failure locks the webhook's row first: failures of one webhook (from any node) are
    // recorded one at a time, and each takes the webhook before its deliveries, as a claim of
    // an open circuit and an edit do (opening a circuit updates all its pending deliveries).
    // A success takes no lock up front, so successes of one webhook are recorded side by side;
    // one that must change the webhook's row after a failure may meet a failure in a cycle,
    // which PostgreSQL breaks and `record_outcome` runs again.
    // If the webhook was moved to another url while the request was out, the answer speaks
    // for the old url only (see SQLite's `record` for the whole reasoning).
    let moved = current_url(c, o.webhook_id, o.error.is_some())
        .await?
        .is_some_and(|url| url != o.url);
    let status_code = o.status_code.map(i64::from);
    let attempt_id: i64 = row(
        c,
        "INSERT INTO attempts (webhook_id, time, duration_ms, status_code, error, response_body)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        &[
            &o.webhook_id,
            &o.time,
            &o.duration_ms,
            &status_code,
            &o.error,
            &o.response_body,
        ],
    )
    .await?
    .try_get(0)?;
    let now = now_ms();
    let mut tally = rules::attempt_tally(o);
    let mut ids = Vec::with_capacity(o.next.len());
    let mut statuses = Vec::with_capacity(o.next.len());
    let mut dues = Vec::with_capacity(o.next.len());
    for (id, next) in &o.next {
        let (status, due) = rules::settle(next, moved, o.deactivate, now);
        rules::tally(&mut tally, status);
        ids.push(*id);
        statuses.push(status);
        dues.push(due);
    }
    // A delivery cancelled while the request was out may have been removed by retention
    // meanwhile (a retention shorter than the attempt): it gets no link. (One removed between
    // this statement and its commit fails the foreign key; the engine records again.)
    exec(
        c,
        "INSERT INTO delivery_attempts (delivery_id, attempt_id)
         SELECT id, $2 FROM deliveries WHERE id = ANY($1)",
        &[&ids, &attempt_id],
    )
    .await?;
    // The attempt counts for every delivery it carried, but only a pending one moves on: one
    // cancelled while it was in flight (its webhook deleted, deactivated or gone) stays so. A
    // delivery that becomes final notes when (retention counts from then).
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
        &[&ids, &statuses, &dues, &o.time, &status_code, &o.error],
    )
    .await?;
    super::stats::count_attempt(c, o.webhook_id, &tally).await?;
    match &o.error {
        _ if moved => Ok(()),
        None => record_success(c, o).await,
        Some(error) => record_failure(c, o, error, circuit).await,
    }
}

async fn current_url(
    c: &impl GenericClient,
    webhook_id: i64,
    lock: bool,
) -> Result<Option<String>, ApiError> {
    let sql = match lock {
        true => "SELECT url FROM webhooks WHERE id = $1 FOR NO KEY UPDATE",
        false => "SELECT url FROM webhooks WHERE id = $1",
    };
    row_opt(c, sql, &[&webhook_id])
        .await?
        .map(|r| Ok(r.try_get(0)?))
        .transpose()
}

/// A success closes the circuit, and what it held back is due at once.
async fn record_success(c: &impl GenericClient, o: &Outcome) -> Result<(), ApiError> {
    exec(
        c,
        "UPDATE deliveries SET due_ms = $2
         WHERE webhook_id = $1 AND status = 'pending' AND due_ms > $2
           AND due_ms <= (SELECT next_probe_ms FROM webhooks WHERE id = $1)",
        &[&o.webhook_id, &now_ms()],
    )
    .await?;
    // Only when something changes: a row lock held to the commit would make every success of
    // the webhook wait for the one before it.
    exec(
        c,
        "UPDATE webhooks SET last_success_time = $2, consecutive_failures = 0,
           circuit_state = 'closed', next_probe_ms = NULL
         WHERE id = $1 AND (last_success_time IS DISTINCT FROM $2 OR consecutive_failures <> 0
           OR circuit_state <> 'closed' OR next_probe_ms IS NOT NULL)",
        &[&o.webhook_id, &o.time],
    )
    .await?;
    Ok(())
}

async fn record_failure(
    c: &impl GenericClient,
    o: &Outcome,
    error: &str,
    circuit: CircuitPolicy,
) -> Result<(), ApiError> {
    let message = rules::failure_message(error, o.deactivate);
    let failures: i64 = row(
        c,
        "UPDATE webhooks SET last_error_time = $2, last_error_message = $3,
           consecutive_failures = consecutive_failures + 1,
           is_active = CASE WHEN $4 THEN false ELSE is_active END
         WHERE id = $1 RETURNING consecutive_failures",
        &[&o.webhook_id, &o.time, &message, &o.deactivate],
    )
    .await?
    .try_get(0)?;
    if o.deactivate {
        return super::webhooks::cancel_pending(c, o.webhook_id).await;
    }
    if failures >= circuit.threshold {
        // Open (or keep open) the circuit: everything waits for the next probe.
        let probe_ms = now_ms() + circuit.probe_interval_ms;
        exec(
            c,
            "UPDATE webhooks SET circuit_state = 'open', next_probe_ms = $2 WHERE id = $1",
            &[&o.webhook_id, &probe_ms],
        )
        .await?;
        exec(
            c,
            "UPDATE deliveries SET due_ms = $2
             WHERE webhook_id = $1 AND status = 'pending' AND due_ms < $2",
            &[&o.webhook_id, &probe_ms],
        )
        .await?;
    }
    Ok(())
}

impl Postgres {
    /// The engine's claim (see [`claim`]).
    pub async fn claim_due(
        &self,
        limit: usize,
        room: Room,
        lease_ms: i64,
        circuit: CircuitPolicy,
    ) -> Result<Vec<Claim>, ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let claims = claim(&tx, limit, &room, lease_ms, circuit).await?;
        tx.commit().await?;
        Ok(claims)
    }

    /// Records one attempt for all the deliveries it carried, and what the webhook learnt.
    pub async fn record_outcome(
        &self,
        outcome: Outcome,
        circuit: CircuitPolicy,
    ) -> Result<(), ApiError> {
        super::retry_on_deadlock(|| async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            record(&tx, &outcome, circuit).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Claimed deliveries that were not sent are due again now (graceful shutdown).
    pub async fn release(&self, ids: Vec<i64>) -> Result<(), ApiError> {
        let client = self.client().await?;
        exec(
            &client,
            "UPDATE deliveries SET due_ms = $2 WHERE id = ANY($1) AND status = 'pending'",
            &[&ids, &now_ms()],
        )
        .await?;
        notify_work(&client).await
    }

    /// When the earliest pending delivery due after `after` (epoch ms) falls due, if any.
    pub async fn next_due_ms(&self, after: i64) -> Result<Option<i64>, ApiError> {
        Ok(row(
            &self.client().await?,
            "SELECT min(due_ms) FROM deliveries WHERE status = 'pending' AND due_ms > $1",
            &[&after],
        )
        .await?
        .try_get(0)?)
    }

    /// For /metrics: pending deliveries, the age of the oldest (s), open circuits.
    pub async fn queue_stats(&self) -> Result<(i64, i64, i64), ApiError> {
        let client = self.client().await?;
        let pending = row(
            &client,
            "SELECT count(*), min(creation_time) FROM deliveries WHERE status = 'pending'",
            &[],
        )
        .await?;
        let oldest: Option<i64> = pending.try_get(1)?;
        let open: i64 = row(
            &client,
            "SELECT count(*) FROM webhooks WHERE circuit_state = 'open' AND deleted_time IS NULL",
            &[],
        )
        .await?
        .try_get(0)?;
        Ok((
            pending.try_get(0)?,
            oldest.map_or(0, |t| now_secs() - t),
            open,
        ))
    }
}
