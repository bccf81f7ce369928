//! The delivery engine's queue on SQLite: claim due work with a lease, hand back what was not
//! sent, say when the next retry falls due. Recording what an attempt came to is `record.rs`.

use super::Sqlite;
use crate::error::ApiError;
use crate::model::{
    now_ms, now_secs, BasicAuth, CircuitPolicy, Claim, Claimed, ClaimedDelivery, Room, Target,
    WireItem,
};
use crate::store::rules;
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
               account_id, activation
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
                    activation: r.get(12)?,
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
) -> Result<Claimed, ApiError> {
    let now = now_ms();
    let mut claimed = Claimed::default();
    let mut count = 0;
    let mut visited = HashSet::new();
    let mut from = (i64::MIN, i64::MIN);
    while count < limit {
        let Some((due_ms, webhook_id)) = next_due_webhook(conn, now, from)? else {
            break;
        };
        from = (due_ms, webhook_id + 1);
        let fits = room.batches(webhook_id);
        if !visited.insert(webhook_id) {
            continue; // more of its work, due later: it had its share
        }
        if fits == 0 {
            claimed.passed_by = true;
            continue;
        }
        let state = webhook_state(conn, webhook_id, now)?;
        if state.deleted {
            super::webhooks::cancel_pending(conn, webhook_id)?;
            continue;
        }
        let share = rules::share(
            state.batch_size,
            fits,
            limit - count,
            (state.open, state.next_probe_ms),
            now,
        );
        let (take, probe_due) = (share.count, share.probe_due);
        let rows = claim_rows(conn, webhook_id, now, now + lease_ms, take)?;
        if let Some(probe_due) = probe_due {
            wait_for_probe(conn, &state, now, probe_due, circuit)?;
        }
        count += rows.len();
        // Its room used up, more of its work may be due: it waits for a batch to finish.
        claimed.passed_by |= rows.len() >= fits * state.batch_size;
        claimed.claims.extend(batches(conn, &state, rows)?);
    }
    Ok(claimed)
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

impl Sqlite {
    /// The engine's claim (see [`claim`]).
    pub async fn claim_due(
        &self,
        limit: usize,
        room: Room,
        lease_ms: i64,
        circuit: CircuitPolicy,
    ) -> Result<Claimed, ApiError> {
        self.write(move |conn| claim(conn, limit, &room, lease_ms, circuit))
            .await
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
                .prepare_cached("SELECT count(*) FROM webhooks WHERE circuit_state = 'open' AND is_active AND deleted_time IS NULL")?
                .query_row([], |r| r.get(0))?;
            Ok((pending, oldest.map_or(0, |t| now_secs() - t), open))
        })
        .await
    }
}
