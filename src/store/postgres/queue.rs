//! The delivery engine's queue on PostgreSQL, shared by every node: claim due work with a
//! lease (`FOR NO KEY UPDATE SKIP LOCKED`, so one delivery is in one node's hands at a time),
//! hand back what was not sent, say when the next retry falls due. The same rules as SQLite's
//! `queue.rs`, in PostgreSQL's SQL; recording what an attempt came to is `record.rs`.

use super::events::{Published, Taken};
use super::{exec, row, row_opt, rows, Postgres};
use crate::error::ApiError;
use crate::model::{
    now_ms, now_secs, BasicAuth, CircuitPolicy, Claim, Claimed, ClaimedDelivery, NewEvent, Room,
    Target, WireItem, PING_EVENT,
};
use crate::store::{rules, Handoff};
use deadpool_postgres::{GenericClient, Object};
use serde_json::value::RawValue;
use std::collections::HashMap;
use tokio_postgres::Row;

struct WebhookState {
    target: Target,
    batch_size: usize,
    open: bool,
    next_probe_ms: Option<i64>,
    deleted: bool,
    is_active: bool,
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
            activation: r.try_get(13)?,
        },
        batch_size: r.try_get::<_, i64>(7)?.max(1) as usize,
        open: r.try_get::<_, &str>(8)? == "open",
        next_probe_ms: r.try_get(9)?,
        deleted: r.try_get::<_, Option<i64>>(10)?.is_some(),
        is_active: r.try_get(12)?,
    })
}

/// The columns of a webhook that [`webhook_state`] reads, in its order (a macro, so that the
/// statements that read them are constants).
macro_rules! state_columns {
    () => {
        "w.url, w.headers, w.auth_username, w.auth_password, w.secret,
    w.previous_secret, w.previous_secret_until, w.batch_size, w.circuit_state, w.next_probe_ms,
    w.deleted_time, w.account_id, w.is_active, w.activation"
    };
}

/// An open circuit's webhook, locked (skipped, None, if another node holds it), so only one
/// node decides on its probe.
async fn lock_open(
    c: &impl GenericClient,
    id: i64,
    now_ms: i64,
) -> Result<Option<WebhookState>, ApiError> {
    let sql = concat!(
        "SELECT ",
        state_columns!(),
        " FROM webhooks w WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED"
    );
    row_opt(c, sql, &[&id])
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
/// and its delivery); an open circuit's is decided in a transaction of its own. Shares taken
/// are leased at once, so a fault after some goes to the log and the claim returns what it
/// took, rather than leave that to wait out its lease.
async fn claim(
    client: &mut Object,
    limit: usize,
    room: &Room,
    lease_ms: i64,
    circuit: CircuitPolicy,
) -> Result<Claimed, ApiError> {
    let now = now_ms();
    let (due, passed_by) = due_webhooks(&*client, now, &room.full()).await?;
    let mut claimed = Claimed {
        claims: Vec::new(),
        passed_by,
        // Stopped at the most webhooks it visits: others may have work due.
        truncated: due.len() as i64 >= WEBHOOKS_PER_CLAIM,
    };
    let mut count = 0;
    for (webhook_id, state) in due {
        if count >= limit {
            break;
        }
        let room = (room.batches(webhook_id), limit - count);
        let (state, deliveries) = match share(client, state, room, lease_ms, circuit, now).await {
            Ok(Some(share)) => share,
            Ok(None) => continue,
            Err(e) if !claimed.claims.is_empty() => {
                tracing::warn!(error = %e, webhook_id, "claiming a webhook's share failed");
                claimed.truncated = true;
                break;
            }
            Err(e) => return Err(e),
        };
        count += deliveries.len();
        // Its room used up, more of its work may be due: it waits for a batch to finish.
        claimed.passed_by |= deliveries.len() >= room.0 * state.batch_size;
        claimed.claims.extend(batches(&state, deliveries));
    }
    Ok(claimed)
}

/// A webhook's deliveries in batches of its `batch_size`.
fn batches(
    state: &WebhookState,
    deliveries: Vec<ClaimedDelivery>,
) -> impl Iterator<Item = Claim> + '_ {
    let mut deliveries = deliveries.into_iter().peekable();
    std::iter::from_fn(move || {
        deliveries.peek()?;
        Some(Claim {
            target: state.target.clone(),
            deliveries: deliveries.by_ref().take(state.batch_size).collect(),
        })
    })
}

/// One webhook's share of a claim (see [`rules::share`]); None when it gets nothing.
/// `room`: the batches the webhook has room for, and the deliveries the claim may still take.
async fn share(
    client: &mut Object,
    state: WebhookState,
    room: (usize, usize),
    lease_ms: i64,
    circuit: CircuitPolicy,
    now: i64,
) -> Result<Option<(WebhookState, Vec<ClaimedDelivery>)>, ApiError> {
    let webhook_id = state.target.webhook_id;
    if room.0 == 0 {
        return Ok(None);
    }
    if state.deleted {
        super::webhooks::cancel_pending(&*client, webhook_id).await?;
        return Ok(None);
    }
    if !state.is_active {
        cancel_all_but_pings(&*client, webhook_id).await?;
    }
    if state.open {
        return claim_probe(client, webhook_id, room, lease_ms, circuit, now).await;
    }
    let count = rules::share(state.batch_size, room.0, room.1, (false, None), now).count;
    let deliveries = claim_rows(&*client, webhook_id, now, now + lease_ms, count).await?;
    Ok(Some((state, deliveries)))
}

/// An inactive webhook gets only the pings of `testWebhook`. Anything else pending for it was
/// queued while another node deactivated it, too late for the deactivation to see and cancel.
/// The webhook is read again in the statement: turned on again since the claim read it, what
/// was queued since is its own. The deliveries are locked in the order of their ids, as every
/// writer of several deliveries takes them (see `webhooks::cancel_pending`).
async fn cancel_all_but_pings(c: &impl GenericClient, webhook_id: i64) -> Result<(), ApiError> {
    exec(
        c,
        "UPDATE deliveries d SET status = 'cancelled', due_ms = NULL, final_time = $3
         FROM (SELECT p.id FROM deliveries p JOIN events e ON e.id = p.event_id
               WHERE p.webhook_id = $1 AND p.status = 'pending' AND e.event <> $2
                 AND NOT (SELECT is_active FROM webhooks WHERE id = $1)
               ORDER BY p.id FOR NO KEY UPDATE OF p) doomed
         WHERE d.id = doomed.id AND d.status = 'pending'",
        &[&webhook_id, &PING_EVENT, &now_secs()],
    )
    .await?;
    Ok(())
}

/// An open circuit's share: its probe when one is due, nothing otherwise. The webhook's row is
/// locked while this is decided (None if another node holds it), so one node sends the probe.
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
macro_rules! pending_webhooks {
    () => {
        "hooks(webhook_id, due_ms) AS (
       (SELECT webhook_id, due_ms FROM deliveries WHERE status = 'pending'
        ORDER BY webhook_id, due_ms LIMIT 1)
       UNION ALL
       SELECT next.webhook_id, next.due_ms FROM hooks CROSS JOIN LATERAL (
         SELECT d.webhook_id, d.due_ms FROM deliveries d
         WHERE d.status = 'pending' AND d.webhook_id > hooks.webhook_id
         ORDER BY d.webhook_id, d.due_ms LIMIT 1) next)"
    };
}

/// The webhooks with work due by `now`, with their state, in the order of their oldest due
/// delivery, but those that are `full` (no room: passed by before the limit is counted, or
/// webhooks busy with old backlogs would keep the rest out); and whether any of those had work
/// due.
async fn due_webhooks(
    c: &impl GenericClient,
    now: i64,
    full: &[i64],
) -> Result<(Vec<(i64, WebhookState)>, bool), ApiError> {
    // `passed` is one row, and the due webhooks are joined to it: a claim with nothing due
    // still learns whether it passed work by.
    let sql = concat!(
        "WITH RECURSIVE ",
        pending_webhooks!(),
        ",
         due AS (
           SELECT webhook_id, due_ms FROM hooks
           WHERE due_ms <= $1 AND webhook_id <> ALL ($3::bigint[])
           ORDER BY due_ms, webhook_id LIMIT $2),
         passed AS (
           SELECT EXISTS (SELECT 1 FROM hooks WHERE due_ms <= $1
             AND webhook_id = ANY ($3::bigint[])) AS passed_by)
         SELECT ",
        state_columns!(),
        ", due.webhook_id, passed.passed_by
         FROM passed LEFT JOIN (due JOIN webhooks w ON w.id = due.webhook_id) ON true
         ORDER BY due.due_ms, due.webhook_id"
    );
    let found = rows(c, sql, &[&now, &WEBHOOKS_PER_CLAIM, &full]).await?;
    let passed_by = match found.first() {
        Some(r) => r.try_get(15)?,
        None => false,
    };
    let mut due = Vec::with_capacity(found.len());
    for r in &found {
        if let Some(id) = r.try_get(14)? {
            due.push((id, webhook_state(r, id, now)?));
        }
    }
    Ok((due, passed_by))
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

/// The webhooks `ids` with their state, by id.
async fn webhook_states(
    c: &impl GenericClient,
    ids: &[i64],
    now: i64,
) -> Result<HashMap<i64, WebhookState>, ApiError> {
    let sql = concat!(
        "SELECT ",
        state_columns!(),
        ", w.id FROM webhooks w WHERE w.id = ANY($1)"
    );
    rows(c, sql, &[&ids])
        .await?
        .iter()
        .map(|r| {
            let id = r.try_get(14)?;
            Ok((id, webhook_state(r, id, now)?))
        })
        .collect()
}

/// The wire item of a delivery leased as it was queued, `data` being its event's as stored.
fn queued_item(
    event: &NewEvent,
    data: &RawValue,
    published: &Published,
    taken: Taken,
) -> Result<ClaimedDelivery, ApiError> {
    let item = WireItem {
        id: published.ids[taken.event],
        delivery_id: taken.delivery_id,
        webhook_id: taken.webhook_id,
        object: &event.object,
        event: &event.event,
        list_id: event.list_id,
        contact_id: event.contact_id,
        timestamp: published.creation_time,
        data,
    };
    Ok(ClaimedDelivery {
        id: taken.delivery_id,
        attempts_in_schedule: 0,
        item: serde_json::value::to_raw_value(&item)?,
    })
}

/// The deliveries `published` leased to this node, with their wire items, by webhook.
fn taken_items(
    events: &[(i64, &NewEvent)],
    published: &Published,
) -> HashMap<i64, Vec<ClaimedDelivery>> {
    let mut by_webhook: HashMap<i64, Vec<ClaimedDelivery>> = HashMap::new();
    // An event's deliveries are consecutive (ids are drawn in the order of events): its data
    // is parsed once, however many webhooks it reaches.
    let mut data: Option<(usize, Box<RawValue>)> = None;
    for &taken in &published.taken {
        if data.as_ref().map(|d| d.0) != Some(taken.event) {
            let stored = published.data[taken.event].clone();
            data = RawValue::from_string(stored)
                .ok()
                .map(|raw| (taken.event, raw));
        }
        let item = match &data {
            Some((_, raw)) => queued_item(events[taken.event].1, raw, published, taken),
            None => Err(ApiError::Internal("stored data is not JSON".into())),
        };
        match item {
            Ok(item) => by_webhook.entry(taken.webhook_id).or_default().push(item),
            // Cannot happen (the item is made of what was just stored); if it did, the
            // delivery's lease would expire and a claim would make it from the row.
            Err(e) => tracing::warn!(error = %e, taken.delivery_id, "not handed over"),
        }
    }
    by_webhook
}

impl Postgres {
    /// Hands the deliveries that `published` leased to this node to its engine, in batches per
    /// webhook as a claim makes them, with the webhooks read after the commit (as a claim reads
    /// them). Those of a webhook that is no longer a closed circuit's, active and live (changed
    /// since the fan-out read it), or all if the reading fails, go back to the queue due now,
    /// for a claim to decide. The reading is left to a task of its own: the calls are answered
    /// meanwhile. The engine is woken for what the fan-out `queued` only once it holds what
    /// it took, so that a claim does not count the room of a webhook it took for as free.
    pub(super) fn hand_over(
        &self,
        handoff: Handoff,
        events: &[(i64, &NewEvent)],
        published: &Published,
    ) {
        let by_webhook = taken_items(events, published);
        let queued = published.queued > 0;
        let pg = self.clone();
        tokio::spawn(async move {
            let webhooks: Vec<i64> = by_webhook.keys().copied().collect();
            let read =
                async { webhook_states(&pg.engine_client().await?, &webhooks, now_ms()).await };
            let mut states = read.await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading webhooks to hand over deliveries failed");
                HashMap::new()
            });
            let (mut claims, mut back) = (Vec::new(), Vec::new());
            for (webhook_id, items) in by_webhook {
                let sendable = states
                    .remove(&webhook_id)
                    .filter(|state| !state.deleted && state.is_active && !state.open);
                match sendable {
                    Some(state) => claims.extend(batches(&state, items)),
                    None => back.extend(items.iter().map(|d| d.id)),
                }
            }
            // Before the room is given back, so that a shutdown waits for it.
            if !back.is_empty() {
                if let Err(e) = pg.release(back).await {
                    tracing::warn!(error = %e, "could not queue deliveries not handed over; their leases will expire");
                }
            }
            handoff.hand(claims);
            if queued {
                pg.work_queued();
            }
        });
    }

    /// The engine's claim (see [`claim`]).
    pub async fn claim_due(
        &self,
        limit: usize,
        room: Room,
        lease_ms: i64,
        circuit: CircuitPolicy,
    ) -> Result<Claimed, ApiError> {
        let mut client = self.claim_client().await?;
        claim(&mut client, limit, &room, lease_ms, circuit).await
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

    /// For /metrics: pending deliveries, the age of the oldest (s), open circuits. (Counts over
    /// whole tables: on the API's connections, not the engine's, which never scan one.)
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
            "SELECT count(*) FROM webhooks
             WHERE circuit_state = 'open' AND is_active AND deleted_time IS NULL",
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
