//! Retention on SQLite: one batch per writer job, so a batch is one short stretch of the
//! writer's time between other callers' writes (the rule and the batch's size are in
//! store/retention.rs). The single writer makes the check and the removal one step: nothing can
//! make a delivery pending again in between.
//!
//! SQLite gives a new row the highest id of its table plus one, so removing the newest row
//! would give its id again to the next one: a receiver that drops items whose `id` (or
//! `delivery_id`, or `webhook-id`) it has seen would drop a new event. So the newest event,
//! the event of the newest delivery and the newest webhook stay, whatever their age.

use super::Sqlite;
use crate::error::ApiError;
use crate::store::retention::{plan, Removed, Scanned, Step, SCAN_EVENTS};
use rusqlite::{params, Connection};

/// One batch: the next events after `after`, and of those created before `cutoff`, every one
/// whose deliveries all became final before it, removed with them.
fn remove_batch(conn: &Connection, after: i64, cutoff: i64) -> Result<Step, ApiError> {
    let scanned = conn
        .prepare_cached(
            "SELECT id, creation_time, delivery_count FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![after, SCAN_EVENTS], |r| {
            Ok(Scanned {
                id: r.get(0)?,
                creation_time: r.get(1)?,
                delivery_count: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let (picked, next_after) = plan(&scanned, cutoff);
    let newest = newest_events(conn)?;
    let mut removed = Removed::default();
    for event_id in picked.into_iter().filter(|id| !newest.contains(&Some(*id))) {
        if finished_before(conn, event_id, cutoff)? {
            removed += remove_event(conn, event_id)?;
        }
    }
    Ok(Step {
        removed,
        next_after,
    })
}

/// The newest event and the event of the newest delivery, which hold the highest ids.
fn newest_events(conn: &Connection) -> Result<[Option<i64>; 2], ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT (SELECT max(id) FROM events),
                    (SELECT event_id FROM deliveries ORDER BY id DESC LIMIT 1)",
        )?
        .query_row([], |r| Ok([r.get(0)?, r.get(1)?]))?)
}

/// Whether every delivery of the event is final, and became so before `cutoff`.
fn finished_before(conn: &Connection, event_id: i64, cutoff: i64) -> Result<bool, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1
               AND (status = 'pending' OR final_time IS NULL OR final_time >= ?2))",
        )?
        .query_row(params![event_id, cutoff], |r| r.get(0))?)
}

/// The event, its deliveries, their links to attempts, and each of those attempts that no
/// other delivery links to.
fn remove_event(conn: &Connection, event_id: i64) -> Result<Removed, ApiError> {
    let attempt_ids = conn
        .prepare_cached(
            "DELETE FROM delivery_attempts
             WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ?1)
             RETURNING attempt_id",
        )?
        .query_map([event_id], |r| r.get::<_, i64>(0))?
        .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
    let deliveries = conn
        .prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")?
        .execute([event_id])?;
    let mut attempts = 0;
    let mut unlinked = conn.prepare_cached(
        "DELETE FROM attempts WHERE id = ?1
           AND NOT EXISTS (SELECT 1 FROM delivery_attempts WHERE attempt_id = ?1)",
    )?;
    for attempt_id in attempt_ids {
        attempts += unlinked.execute([attempt_id])?;
    }
    let events = conn
        .prepare_cached("DELETE FROM events WHERE id = ?1")?
        .execute([event_id])?;
    Ok(Removed {
        events: events as u64,
        deliveries: deliveries as u64,
        attempts: attempts as u64,
        webhooks: 0,
    })
}

/// Webhooks most one batch removes.
const WEBHOOKS_PER_BATCH: i64 = 100;

/// Webhooks deleted before `cutoff` that no delivery names any more (their events were removed
/// first), with any attempt of theirs that no delivery links to.
fn remove_webhooks(conn: &Connection, cutoff: i64) -> Result<Removed, ApiError> {
    let ids = conn
        .prepare_cached(
            "SELECT id FROM webhooks w WHERE deleted_time < ?1
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.webhook_id = w.id)
               AND id < (SELECT max(id) FROM webhooks)
             LIMIT ?2",
        )?
        .query_map(params![cutoff, WEBHOOKS_PER_BATCH], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut removed = Removed::default();
    for id in ids {
        removed.attempts += conn
            .prepare_cached(
                "DELETE FROM attempts WHERE webhook_id = ?1
                   AND NOT EXISTS (SELECT 1 FROM delivery_attempts da WHERE da.attempt_id = attempts.id)",
            )?
            .execute([id])? as u64;
        removed.webhooks += conn
            .prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
            .execute([id])? as u64;
    }
    Ok(removed)
}

impl Sqlite {
    /// Retention: one batch of a pass (see [`remove_batch`]).
    pub async fn remove_expired(&self, after: i64, cutoff: i64) -> Result<Step, ApiError> {
        self.write(move |conn| remove_batch(conn, after, cutoff))
            .await
    }

    /// Retention: webhooks deleted before `cutoff` that nothing refers to any more.
    pub async fn remove_deleted_webhooks(&self, cutoff: i64) -> Result<Removed, ApiError> {
        self.write(move |conn| remove_webhooks(conn, cutoff)).await
    }
}
