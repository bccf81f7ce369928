//! Retention on PostgreSQL: one short transaction per batch (the rule and the batch's size are
//! in store/retention.rs). Every node runs passes; a transaction-scoped advisory lock lets one
//! batch run at a time in the whole cluster, and a node that finds it taken ends its pass
//! (another node is removing). Rows are locked before they are checked, so a call on another
//! node that makes a delivery pending again (retryDelivery) either commits first, and its
//! event is kept, or waits and then finds the delivery gone.

use super::{exec, rows, Postgres};
use crate::error::ApiError;
use crate::store::retention::{plan, Removed, Scanned, Step, SCAN_EVENTS};
use deadpool_postgres::GenericClient;

/// Held by the one batch of removal running in the cluster.
const LOCK: &str = "SELECT pg_try_advisory_xact_lock(hashtext('hookrpc retention'))";
/// Webhooks most one batch removes.
const WEBHOOKS_PER_BATCH: i64 = 100;

/// Whether this transaction may remove (no other node's batch is running).
async fn take_turn(c: &impl GenericClient) -> Result<bool, ApiError> {
    Ok(rows(c, LOCK, &[]).await?[0].try_get(0)?)
}

/// One batch: the next events after `after`, and of those created before `cutoff`, every one
/// whose deliveries all became final before it, removed with them.
async fn remove_batch(c: &impl GenericClient, after: i64, cutoff: i64) -> Result<Step, ApiError> {
    if !take_turn(c).await? {
        return Ok(Step::default());
    }
    let scanned = rows(
        c,
        "SELECT id, creation_time, delivery_count FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        &[&after, &SCAN_EVENTS],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Scanned {
            id: r.try_get(0)?,
            creation_time: r.try_get(1)?,
            delivery_count: r.try_get(2)?,
        })
    })
    .collect::<Result<Vec<_>, ApiError>>()?;
    let (picked, next_after) = plan(&scanned, cutoff);
    let removed = match picked.is_empty() {
        true => Removed::default(),
        false => remove_events(c, &finished_before(c, &picked, cutoff).await?).await?,
    };
    Ok(Step {
        removed,
        next_after,
    })
}

/// Of `events`, those whose deliveries are all final and became so before `cutoff`. Their
/// final deliveries are locked first (pending ones are left to claims: they keep their event
/// anyway), so none can be made pending again before this transaction ends.
async fn finished_before(
    c: &impl GenericClient,
    events: &[i64],
    cutoff: i64,
) -> Result<Vec<i64>, ApiError> {
    rows(
        c,
        "SELECT id FROM deliveries WHERE event_id = ANY($1) AND status <> 'pending'
         ORDER BY id FOR UPDATE",
        &[&events],
    )
    .await?;
    rows(
        c,
        "SELECT e FROM unnest($1::bigint[]) AS e WHERE NOT EXISTS (
           SELECT 1 FROM deliveries WHERE event_id = e
             AND (status = 'pending' OR final_time IS NULL OR final_time >= $2))",
        &[&events, &cutoff],
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect()
}

/// The events, their deliveries, their links to attempts, and each of those attempts that no
/// other delivery links to.
async fn remove_events(c: &impl GenericClient, events: &[i64]) -> Result<Removed, ApiError> {
    let attempt_ids: Vec<i64> = rows(
        c,
        "WITH unlinked AS (DELETE FROM delivery_attempts
           WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ANY($1))
           RETURNING attempt_id)
         SELECT DISTINCT attempt_id FROM unlinked",
        &[&events],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    let deliveries = exec(
        c,
        "DELETE FROM deliveries WHERE event_id = ANY($1)",
        &[&events],
    )
    .await?;
    let attempts = exec(
        c,
        "DELETE FROM attempts a WHERE id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM delivery_attempts da WHERE da.attempt_id = a.id)",
        &[&attempt_ids],
    )
    .await?;
    let events = exec(c, "DELETE FROM events WHERE id = ANY($1)", &[&events]).await?;
    Ok(Removed {
        events,
        deliveries,
        attempts,
        webhooks: 0,
    })
}

/// Webhooks deleted before `cutoff` that no delivery names any more (their events were removed
/// first), with any attempt of theirs that no delivery links to.
async fn remove_webhooks(c: &impl GenericClient, cutoff: i64) -> Result<Removed, ApiError> {
    if !take_turn(c).await? {
        return Ok(Removed::default());
    }
    let ids: Vec<i64> = rows(
        c,
        "SELECT id FROM webhooks w WHERE deleted_time < $1
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.webhook_id = w.id)
         ORDER BY id LIMIT $2 FOR UPDATE",
        &[&cutoff, &WEBHOOKS_PER_BATCH],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    let attempts = exec(
        c,
        "DELETE FROM attempts a WHERE webhook_id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM delivery_attempts da WHERE da.attempt_id = a.id)",
        &[&ids],
    )
    .await?;
    let webhooks = exec(c, "DELETE FROM webhooks WHERE id = ANY($1)", &[&ids]).await?;
    Ok(Removed {
        attempts,
        webhooks,
        ..Removed::default()
    })
}

impl Postgres {
    /// Retention: one batch of a pass (see [`remove_batch`]).
    pub async fn remove_expired(&self, after: i64, cutoff: i64) -> Result<Step, ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let step = remove_batch(&tx, after, cutoff).await?;
        tx.commit().await?;
        Ok(step)
    }

    /// Retention: webhooks deleted before `cutoff` that nothing refers to any more.
    pub async fn remove_deleted_webhooks(&self, cutoff: i64) -> Result<Removed, ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let removed = remove_webhooks(&tx, cutoff).await?;
        tx.commit().await?;
        Ok(removed)
    }
}
