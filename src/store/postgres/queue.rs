//! The delivery engine's queue on PostgreSQL, shared by every node: claim due work with a
//! lease (`FOR NO KEY UPDATE SKIP LOCKED`, so one delivery is in one node's hands at a time),
//! hand back what was not sent, say when the next retry falls due. The same rules as SQLite's
//! `queue.rs`, in PostgreSQL's SQL; recording what an attempt came to is `record.rs`.

use super::{exec, row, row_opt, rows, Postgres};
use crate::error::ApiError;
use crate::model::{
    now_ms, now_secs, BasicAuth, CircuitPolicy, Claim, ClaimedDelivery, Room, Target, WireItem,
    PING_EVENT,
};
use crate::store::rules;
use deadpool_postgres::{GenericClient, Object};
use serde_json::value::RawValue;
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
) -> Result<Vec<Claim>, ApiError> {
    let now = now_ms();
    let mut claims = Vec::new();
    let mut claimed = 0;
    for (webhook_id, state) in due_webhooks(&*client, now, &room.full()).await? {
        if claimed >= limit {
            break;
        }
        let room = (room.batches(webhook_id), limit - claimed);
        let (state, deliveries) = match share(client, state, room, lease_ms, circuit, now).await {
            Ok(Some(share)) => share,
            Ok(None) => continue,
            Err(e) if !claims.is_empty() => {
                tracing::warn!(error = %e, webhook_id, "claiming a webhook's share failed");
                break;
            }
            Err(e) => return Err(e),
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
/// was queued since is its own.
async fn cancel_all_but_pings(c: &impl GenericClient, webhook_id: i64) -> Result<(), ApiError> {
    exec(
        c,
        "UPDATE deliveries d SET status = 'cancelled', due_ms = NULL, final_time = $3
         FROM events e
         WHERE d.webhook_id = $1 AND d.status = 'pending' AND e.id = d.event_id
           AND e.event <> $2 AND NOT (SELECT is_active FROM webhooks WHERE id = $1)",
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
/// webhooks busy with old backlogs would keep the rest out).
async fn due_webhooks(
    c: &impl GenericClient,
    now: i64,
    full: &[i64],
) -> Result<Vec<(i64, WebhookState)>, ApiError> {
    let sql = concat!(
        "WITH RECURSIVE ",
        pending_webhooks!(),
        ",
         due AS (
           SELECT webhook_id, due_ms FROM hooks
           WHERE due_ms <= $1 AND webhook_id <> ALL ($3::bigint[])
           ORDER BY due_ms, webhook_id LIMIT $2)
         SELECT ",
        state_columns!(),
        ", due.webhook_id FROM due JOIN webhooks w ON w.id = due.webhook_id
         ORDER BY due.due_ms, due.webhook_id"
    );
    rows(c, sql, &[&now, &WEBHOOKS_PER_CLAIM, &full])
        .await?
        .iter()
        .map(|r| {
            let id = r.try_get(14)?;
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
