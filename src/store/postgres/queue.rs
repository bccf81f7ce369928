//! The delivery engine's queue on PostgreSQL, shared by every node: claim due work with a
//! lease (`FOR NO KEY UPDATE SKIP LOCKED`, so one delivery is in one node's hands at a time), record
//! what each attempt came to (and what its webhook's circuit learns), hand back what was not
//! sent. The same rules as SQLite's `queue.rs`, in PostgreSQL's SQL.

use super::{exec, row, row_opt, rows, Postgres};
use crate::error::ApiError;
use crate::model::{
    now_ms, now_secs, BasicAuth, CircuitPolicy, Claim, ClaimedDelivery, Outcome, Room, Target,
    WireItem,
};
use crate::store::operational::{self, FailedDelivery};
use crate::store::rules::{self, AfterFailure, WebhookNow};
use deadpool_postgres::{GenericClient, Object};
use serde_json::value::RawValue;
use tokio_postgres::Row;

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

/// The columns of a webhook that [`webhook_state`] reads, in its order.
const STATE_COLUMNS: &str = "w.url, w.headers, w.auth_username, w.auth_password, w.secret,
    w.previous_secret, w.previous_secret_until, w.batch_size, w.circuit_state, w.next_probe_ms,
    w.deleted_time, w.account_id";

/// An open circuit's webhook, locked (skipped, None, if another node holds it), so only one
/// node decides on its probe.
async fn lock_open(
    c: &impl GenericClient,
    id: i64,
    now_ms: i64,
) -> Result<Option<WebhookState>, ApiError> {
    let sql = format!(
        "SELECT {STATE_COLUMNS} FROM webhooks w WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED"
    );
    row_opt(c, &sql, &[&id])
        .await?
        .map(|r| webhook_state(&r, id, now_ms))
        .transpose()
}

/// A claimed delivery, with its item as the wire carries it, from a row of [`claim_rows`].
fn claimed_delivery(r: &Row, webhook_id: i64) -> Result<ClaimedDelivery, ApiError> {
    let item = WireItem {
        id: r.try_get(1)?,
        delivery_id: r.try_get(0)?,
        webhook_id,
        object: r.try_get(3)?,
        event: r.try_get(4)?,
        list_id: r.try_get(5)?,
        contact_id: r.try_get(6)?,
        timestamp: r.try_get(7)?,
        // Stored by us, so always JSON; were a row ever damaged, its item still goes out (with
        // null data) rather than failing every claim that reaches it.
        data: serde_json::from_str(r.try_get(8)?).unwrap_or(RawValue::NULL),
    };
    Ok(ClaimedDelivery {
        id: r.try_get(0)?,
        attempts_in_schedule: r.try_get(2)?,
        item: serde_json::value::to_raw_value(&item)?,
    })
}

/// Claims up to `limit` due deliveries, oldest first, one webhook at a time and at most the
/// batches it has `room` for, as SQLite's claim does. Rows another node has locked are
/// skipped, not waited for: they are in its hands. A closed circuit's share is one statement,
/// atomic by itself (no transaction around the claim: two round trips fewer between a publish
/// and its delivery); an open circuit's is decided in a transaction of its own.
async fn claim(
    client: &mut Object,
    limit: usize,
    room: &Room,
    lease_ms: i64,
    circuit: CircuitPolicy,
) -> Result<Vec<Claim>, ApiError> {
    let now = now_ms();
    let mut claims = Vec::new();
    let mut claimed = 0;
    for (webhook_id, state) in due_webhooks(&*client, now).await? {
        if claimed >= limit {
            break;
        }
        let fits = room.batches(webhook_id);
        if fits == 0 {
            continue; // busy: as many batches in hand as it may send
        }
        if state.deleted {
            super::webhooks::cancel_pending(&*client, webhook_id).await?;
            continue;
        }
        let (state, deliveries) = if state.open {
            match claim_probe(
                client,
                webhook_id,
                (fits, limit - claimed),
                lease_ms,
                circuit,
                now,
            )
            .await?
            {
                Some(probe) => probe,
                None => continue, // another node is deciding on its probe
            }
        } else {
            let share = rules::share(state.batch_size, fits, limit - claimed, (false, None), now);
            let lease_end = now + lease_ms;
            let deliveries = claim_rows(&*client, webhook_id, now, lease_end, share.count).await?;
            (state, deliveries)
        };
        claimed += deliveries.len();
        let mut deliveries = deliveries.into_iter().peekable();
        while deliveries.peek().is_some() {
            claims.push(Claim {
                target: state.target.clone(),
                deliveries: deliveries.by_ref().take(state.batch_size).collect(),
            });
        }
    }
    Ok(claims)
}

/// An open circuit's share: its probe when one is due, nothing otherwise. The webhook's row is
/// locked while this is decided (None if another node holds it), so one node sends the probe.
/// `room`: the batches the webhook has room for, and the deliveries the claim may still take.
async fn claim_probe(
    client: &mut Object,
    webhook_id: i64,
    room: (usize, usize),
    lease_ms: i64,
    circuit: CircuitPolicy,
    now: i64,
) -> Result<Option<(WebhookState, Vec<ClaimedDelivery>)>, ApiError> {
    let tx = client.transaction().await?;
    let Some(state) = lock_open(&tx, webhook_id, now).await? else {
        return Ok(None);
    };
    let circuit_now = (state.open, state.next_probe_ms);
    let share = rules::share(state.batch_size, room.0, room.1, circuit_now, now);
    let deliveries = claim_rows(&tx, webhook_id, now, now + lease_ms, share.count).await?;
    if let Some(probe_due) = share.probe_due {
        wait_for_probe(&tx, &state, now, probe_due, circuit).await?;
    }
    tx.commit().await?;
    Ok(Some((state, deliveries)))
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

/// Most webhooks one claim takes work from.
const WEBHOOKS_PER_CLAIM: i64 = 200;

/// Every webhook with pending work and when its oldest pending delivery is due: a skip through
/// `deliveries_pending` whose every step is one webhook (its first entry there), so a
/// webhook's long backlog costs one step, not one per delivery.
const PENDING_WEBHOOKS: &str = "hooks(webhook_id, due_ms) AS (
       (SELECT webhook_id, due_ms FROM deliveries WHERE status = 'pending'
        ORDER BY webhook_id, due_ms LIMIT 1)
       UNION ALL
       SELECT next.webhook_id, next.due_ms FROM hooks CROSS JOIN LATERAL (
         SELECT d.webhook_id, d.due_ms FROM deliveries d
         WHERE d.status = 'pending' AND d.webhook_id > hooks.webhook_id
         ORDER BY d.webhook_id, d.due_ms LIMIT 1) next)";

/// The webhooks with work due by `now`, with their state, in the order of their oldest due
/// delivery.
async fn due_webhooks(
    c: &impl GenericClient,
    now: i64,
) -> Result<Vec<(i64, WebhookState)>, ApiError> {
    let sql = format!(
        "WITH RECURSIVE {PENDING_WEBHOOKS},
         due AS (
           SELECT webhook_id, due_ms FROM hooks WHERE due_ms <= $1
           ORDER BY due_ms, webhook_id LIMIT $2)
         SELECT {STATE_COLUMNS}, due.webhook_id FROM due JOIN webhooks w ON w.id = due.webhook_id
         ORDER BY due.due_ms, due.webhook_id"
    );
    rows(c, &sql, &[&now, &WEBHOOKS_PER_CLAIM])
        .await?
        .iter()
        .map(|r| {
            let id = r.try_get(12)?;
            Ok((id, webhook_state(r, id, now)?))
        })
        .collect()
}

/// Leases up to `count` of a webhook's due deliveries, oldest first, that no other node holds;
/// returns them, in the order of their ids, with their events as the wire carries them.
async fn claim_rows(
    c: &impl GenericClient,
    webhook_id: i64,
    now: i64,
    lease_end: i64,
    count: usize,
) -> Result<Vec<ClaimedDelivery>, ApiError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    rows(
        c,
        "WITH claimed AS (
           UPDATE deliveries SET due_ms = $3 WHERE id IN
             (SELECT id FROM deliveries WHERE webhook_id = $1 AND status = 'pending'
                AND due_ms <= $2 ORDER BY due_ms, id LIMIT $4 FOR NO KEY UPDATE SKIP LOCKED)
           RETURNING id, event_id, attempt_count - schedule_start AS in_schedule)
         SELECT c.id, c.event_id, c.in_schedule, e.object, e.event, e.list_id, e.contact_id,
           e.creation_time, e.data
         FROM claimed c JOIN events e ON e.id = c.event_id ORDER BY c.id",
        &[&webhook_id, &now, &lease_end, &(count as i64)],
    )
    .await?
    .iter()
    .map(|r| claimed_delivery(r, webhook_id))
    .collect()
}

/// Records an attempt, and publishes what it tells the account (operational events) in the
/// same transaction; returns whether that queued deliveries.
async fn record(
    c: &impl GenericClient,
    o: &Outcome,
    circuit: CircuitPolicy,
) -> Result<bool, ApiError> {
    // A failure locks the webhook's row first: failures of one webhook (from any node) are
    // recorded one at a time, and each takes the webhook before its deliveries, as a claim of
    // an open circuit and an edit do (opening a circuit updates all its pending deliveries).
    // A success takes no lock up front, so successes of one webhook are recorded side by side;
    // one that must change the webhook's row after a failure may meet a failure in a cycle,
    // which PostgreSQL breaks and `record_outcome` runs again.
    // If the webhook was moved to another url while the request was out, the answer speaks
    // for the old url only (see SQLite's `record` for the whole reasoning).
    let status_code = o.status_code.map(i64::from);
    let ids: Vec<i64> = o.next.iter().map(|(id, _)| *id).collect();
    // A delivery cancelled while the request was out may have been removed by retention
    // meanwhile (a retention shorter than the attempt): it gets no link. (One removed between
    // this statement and its commit fails the foreign key; the engine records again.)
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
    let (was, _) = tokio::try_join!(webhook_now(c, o.webhook_id, o.error.is_some()), attempted)?;
    let moved = was.url != o.url;
    let now = now_ms();
    let mut tally = rules::attempt_tally(o);
    let mut statuses = Vec::with_capacity(o.next.len());
    let mut dues = Vec::with_capacity(o.next.len());
    for (_, next) in &o.next {
        let (status, due) = rules::settle(next, moved, o.deactivate, now);
        rules::tally(&mut tally, status);
        statuses.push(status);
        dues.push(due);
    }
    let failing: Vec<i64> = ids
        .iter()
        .zip(&statuses)
        .filter(|(_, status)| **status == "failed")
        .map(|(id, _)| *id)
        .collect();
    let failed = still_pending(c, &failing).await?;
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
            &[&ids, &statuses, &dues, &o.time, &status_code, &o.error],
        )
        .await
    };
    let counted = super::stats::count_attempt(c, was.account_id, o.webhook_id, &tally);
    let noted = async {
        match o.error.is_none() && !moved {
            true => note_success(c, o).await,
            false => Ok(()),
        }
    };
    // These do not depend on one another: sent together, answered in about one round trip.
    tokio::try_join!(moved_on, counted, noted)?;
    // What the webhook learns comes after: opening a circuit or a deactivation moves the
    // webhook's other pending deliveries, and must see these ones settled first.
    let (after, closed) = match &o.error {
        _ if moved => (None, false),
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
    super::events::publish(c, was.account_id, &told).await
}

/// The webhook as an outcome finds it, its row locked when `lock`.
async fn webhook_now(
    c: &impl GenericClient,
    webhook_id: i64,
    lock: bool,
) -> Result<WebhookNow, ApiError> {
    const SELECT: &str = "SELECT account_id, url, consecutive_failures, circuit_state,
        circuit_opened_time, is_active FROM webhooks WHERE id = $1";
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

/// A success on an open circuit (read without a lock) closes it, and what it held back is due
/// at once. (The statements go one after the other: the first reads the `next_probe_ms` that
/// the next clears.) Returns whether it closed the circuit: of two successes that both read it
/// open, one does.
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
    let after = rules::after_failure(was, o.deactivate, circuit, o.time);
    let deactivate = matches!(after, AfterFailure::Deactivate { .. });
    let open = matches!(after, AfterFailure::Open { .. });
    // Open (or keep open) the circuit: everything waits for the next probe.
    let probe_ms = now_ms() + circuit.probe_interval_ms;
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
            &rules::failure_message(error, &after),
            &deactivate,
            &open,
            &probe_ms,
        ],
    )
    .await?;
    if deactivate {
        super::webhooks::cancel_pending(c, o.webhook_id).await?;
    } else if open {
        exec(
            c,
            "UPDATE deliveries SET due_ms = $2
             WHERE webhook_id = $1 AND status = 'pending' AND due_ms < $2",
            &[&o.webhook_id, &probe_ms],
        )
        .await?;
    }
    Ok(after)
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
        let mut client = self.claim_client().await?;
        claim(&mut client, limit, &room, lease_ms, circuit).await
    }

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

    /// Claimed deliveries that were not sent are due again now (graceful shutdown).
    pub async fn release(&self, ids: Vec<i64>) -> Result<(), ApiError> {
        let client = self.engine_client().await?;
        exec(
            &client,
            "UPDATE deliveries SET due_ms = $2 WHERE id = ANY($1) AND status = 'pending'",
            &[&ids, &now_ms()],
        )
        .await?;
        self.work_queued();
        Ok(())
    }

    /// When the earliest pending delivery due after `after` (epoch ms) falls due, if any.
    pub async fn next_due_ms(&self, after: i64) -> Result<Option<i64>, ApiError> {
        Ok(row(
            &self.claim_client().await?,
            "SELECT min(due_ms) FROM deliveries WHERE status = 'pending' AND due_ms > $1",
            &[&after],
        )
        .await?
        .try_get(0)?)
    }

    /// For /metrics: pending deliveries, the age of the oldest (s), open circuits.
    pub async fn queue_stats(&self) -> Result<(i64, i64, i64), ApiError> {
        let client = self.engine_client().await?;
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
