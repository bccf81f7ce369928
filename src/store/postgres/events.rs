//! The SQL of the `events` table, and the fan-out: events and their deliveries are written in
//! one transaction, and its commit is the acknowledgement (the outbox is the queue). A call's
//! events go in with one statement, and their deliveries with another, whatever their number.

use super::{exec, row, row_opt, rows, Postgres};
use crate::error::ApiError;
use crate::model::{now_ms, EventRecord, NewEvent, Offer, PING_EVENT};
use crate::search::Criteria;
use crate::store::Handoff;
use deadpool_postgres::GenericClient;
use serde_json::value::RawValue;
use std::collections::HashMap;
use tokio_postgres::Row;

/// How long an idempotency key is remembered (API.md: 24 h).
const IDEMPOTENCY_SECS: i64 = 24 * 3600;

const FROM: &str = "FROM events WHERE account_id = $1";

const COLUMNS: &str =
    "id, object, event, list_id, contact_id, data, idempotency_key, creation_time, delivery_count";

fn event_record(r: &Row) -> Result<EventRecord, ApiError> {
    Ok(EventRecord {
        id: r.try_get(0)?,
        object: r.try_get(1)?,
        event: r.try_get(2)?,
        list_id: r.try_get(3)?,
        contact_id: r.try_get(4)?,
        data: RawValue::from_string(r.try_get(5)?).unwrap_or_else(|_| RawValue::NULL.to_owned()),
        idempotency_key: r.try_get(6)?,
        creation_time: r.try_get(7)?,
        delivery_count: r.try_get(8)?,
    })
}

/// What a fan-out wrote.
#[derive(Default)]
pub(super) struct Published {
    /// The events' ids, in the order given.
    pub ids: Vec<i64>,
    /// Deliveries queued due now, for a claim.
    pub queued: i64,
    /// Deliveries leased to this node as they were queued (under an [`Offer`]), in the order
    /// of their ids.
    pub taken: Vec<Taken>,
    /// The events' data as stored, in the order given.
    pub data: Vec<String>,
    /// The events' creation time.
    pub creation_time: i64,
}

/// A delivery leased to this node as it was queued.
#[derive(Clone, Copy)]
pub(super) struct Taken {
    /// Its event's place among those given.
    pub event: usize,
    pub delivery_id: i64,
    pub webhook_id: i64,
}

/// Stores events (each of its account) and queues a delivery for every webhook each reaches
/// (API.md: the active webhooks of its account and object, following its event or every event,
/// `*`, watching its list or all lists), in one statement, whatever their number: outside a
/// transaction, a call is one round trip. A delivery is due now, or, under an `offer`, leased
/// to this node's engine at once when its webhook's circuit is closed and the engine has room
/// for it (the engine is handed those after the commit: see `queue.rs`, `hand_over`).
async fn fan_out(
    c: &impl GenericClient,
    events: &[(i64, &NewEvent)],
    now_ms: i64,
    offer: Option<&Offer>,
) -> Result<Published, ApiError> {
    if events.is_empty() {
        return Ok(Published::default());
    }
    let accounts: Vec<i64> = events.iter().map(|e| e.0).collect();
    let objects: Vec<&str> = events.iter().map(|e| e.1.object.as_str()).collect();
    let names: Vec<&str> = events.iter().map(|e| e.1.event.as_str()).collect();
    let lists: Vec<i64> = events.iter().map(|e| e.1.list_id).collect();
    let contacts: Vec<Option<i64>> = events.iter().map(|e| e.1.contact_id).collect();
    let data: Vec<String> = events
        .iter()
        .map(|e| e.1.data.as_str().to_owned())
        .collect();
    let keys: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.1.idempotency_key.as_deref())
        .collect();
    // Identities are drawn in insertion order, which is the order given: the n-th smallest id
    // is the n-th event. The webhooks are found once per distinct kind of event (`hooks`,
    // materialized so that the planner cannot fold it into the join with the events): a plan
    // made while `webhooks` looked empty (a new database, before its first ANALYZE) joined
    // every event with every webhook and then with every webhook's follows, 100 × 100 × 1,000
    // rows for 1,000 events to 100 webhooks (3.7 of the statement's 5.3 s, BENCHMARKS.md
    // "Issue 10, fifth round"); now the worst such plan reads webhooks × follows once per
    // distinct account, object, event and list among the events, not once per event.
    // Taken (`taking`): of each closed circuit's deliveries, the oldest, as many as its room
    // has batches for (its `share`); webhook by webhook, whole shares (as a claim takes them,
    // so that each request carries a batch of one webhook) while they fit in the most offered.
    // Windows, not a join: with a new table's estimates of one row, a join with the shares
    // was planned as a nested loop that computed them again for every delivery (1,000 events
    // to one webhook: 380 of the statement's 440 ms).
    let (mut known, mut batches) = (Vec::new(), Vec::new());
    let (lease_end, otherwise, most) = match offer {
        Some(offer) => {
            for (&webhook, &room) in &offer.room.known {
                known.push(webhook);
                batches.push(room as i64);
            }
            let otherwise = offer.room.otherwise as i64;
            (offer.lease_end, otherwise, offer.most as i64)
        }
        None => (now_ms, 0, 0),
    };
    let published = rows(
        c,
        "WITH given AS (
           SELECT * FROM unnest($1::bigint[], $3::text[], $4::text[], $5::bigint[],
                                $6::bigint[], $7::text[], $8::text[]) WITH ORDINALITY
             AS e(account_id, object, event, list_id, contact_id, data, idempotency_key, n)),
         hooks AS MATERIALIZED (
           SELECT k.*, w.id AS webhook_id, w.circuit_state = 'closed' AS closed,
             w.batch_size * coalesce(r.batches, $13) AS room
           FROM (SELECT DISTINCT account_id, object, event, list_id FROM given) k
           JOIN webhook_events f ON f.account_id = k.account_id AND f.object = k.object
             AND f.event IN (k.event, '*')
           JOIN webhooks w ON w.id = f.webhook_id
           LEFT JOIN unnest($11::bigint[], $12::bigint[]) r(webhook_id, batches)
             ON r.webhook_id = w.id
           WHERE (w.list_id = 0 OR w.list_id = k.list_id) AND w.is_active
             AND w.deleted_time IS NULL),
         targets AS (
           SELECT g.n, g.account_id, h.webhook_id,
             row_number() OVER (PARTITION BY h.webhook_id ORDER BY g.n) AS place,
             CASE WHEN h.closed THEN least(count(*) OVER (PARTITION BY h.webhook_id), h.room)
               ELSE 0 END AS share
           FROM given g
           JOIN hooks h ON h.account_id = g.account_id AND h.object = g.object
             AND h.event = g.event AND h.list_id = g.list_id),
         taking AS (
           SELECT *, sum(CASE WHEN place = 1 THEN share ELSE 0 END)
             OVER (ORDER BY webhook_id)::bigint AS through
           FROM targets),
         counted AS (SELECT n, count(*) AS deliveries FROM targets GROUP BY n),
         inserted AS (
           INSERT INTO events (account_id, object, event, list_id, contact_id, data,
             idempotency_key, creation_time, delivery_count)
           SELECT g.account_id, g.object, g.event, g.list_id, g.contact_id, g.data,
             g.idempotency_key, $2, coalesce(c.deliveries, 0)
           FROM given g LEFT JOIN counted c ON c.n = g.n ORDER BY g.n
           RETURNING id),
         numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM inserted),
         queued AS (
           INSERT INTO deliveries (account_id, webhook_id, event_id, status, due_ms,
             creation_time)
           SELECT t.account_id, t.webhook_id, e.id, 'pending',
             CASE WHEN t.place <= t.share AND t.through <= $14::bigint THEN $10::bigint
               ELSE $9::bigint END, $2
           FROM taking t JOIN numbered e ON e.n = t.n ORDER BY e.id, t.webhook_id
           RETURNING id, event_id, webhook_id, due_ms > $9 AS taken),
         taken AS (
           SELECT event_id, array_agg(id ORDER BY id) AS ids,
             array_agg(webhook_id ORDER BY id) AS webhooks
           FROM queued WHERE taken GROUP BY event_id)
         SELECT n.id, (SELECT count(*) FROM queued WHERE NOT taken), t.ids, t.webhooks
         FROM numbered n LEFT JOIN taken t ON t.event_id = n.id ORDER BY n.n",
        &[
            &accounts,
            &(now_ms / 1000),
            &objects,
            &names,
            &lists,
            &contacts,
            &data,
            &keys,
            &now_ms,
            &lease_end,
            &known,
            &batches,
            &otherwise,
            &most,
        ],
    )
    .await?;
    let mut out = Published {
        ids: Vec::with_capacity(published.len()),
        queued: match published.first() {
            Some(r) => r.try_get(1)?,
            None => 0,
        },
        taken: Vec::new(),
        data,
        creation_time: now_ms / 1000,
    };
    for (event, r) in published.iter().enumerate() {
        out.ids.push(r.try_get(0)?);
        let deliveries: Option<Vec<i64>> = r.try_get(2)?;
        let webhooks: Option<Vec<i64>> = r.try_get(3)?;
        let taken = deliveries
            .into_iter()
            .flatten()
            .zip(webhooks.into_iter().flatten());
        out.taken
            .extend(taken.map(|(delivery_id, webhook_id)| Taken {
                event,
                delivery_id,
                webhook_id,
            }));
    }
    Ok(out)
}

/// Events of one account, as [`fan_out`] takes them.
fn of_account(account_id: i64, events: &[NewEvent]) -> Vec<(i64, &NewEvent)> {
    events.iter().map(|e| (account_id, e)).collect()
}

/// Publishes `events` inside the caller's transaction (operational events beside the change
/// they tell of); returns whether any delivery was queued, for the caller to wake the engines
/// once it has committed.
pub(super) async fn publish(
    c: &impl GenericClient,
    account_id: i64,
    events: &[NewEvent],
) -> Result<bool, ApiError> {
    let published = fan_out(c, &of_account(account_id, events), now_ms(), None).await?;
    Ok(published.queued > 0)
}

/// The events that idempotency keys already made (key → the first event's id). Each key is
/// locked to the end of the transaction, so a second call with the same key, on any node,
/// waits for the first; the keys are locked in one order (sorted), so two calls that name the
/// same keys in other orders do not wait for each other in a cycle.
async fn earlier_events(
    c: &impl GenericClient,
    account_id: i64,
    keys: &[&str],
    now: i64,
) -> Result<HashMap<String, i64>, ApiError> {
    exec(
        c,
        "SELECT pg_advisory_xact_lock(hashtextextended($1::bigint || ':' || key, 0))
         FROM (SELECT DISTINCT key FROM unnest($2::text[]) AS k(key) ORDER BY key) sorted",
        &[&account_id, &keys],
    )
    .await?;
    rows(
        c,
        "SELECT DISTINCT ON (idempotency_key) idempotency_key, id FROM events
         WHERE account_id = $1 AND idempotency_key = ANY($2) AND creation_time > $3
         ORDER BY idempotency_key, id",
        &[&account_id, &keys, &(now - IDEMPOTENCY_SECS)],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

/// Where each event of a call went: an earlier event (idempotency), or a new one.
enum Placed {
    Earlier(i64),
    /// The index among the call's new events.
    New(usize),
}

/// `add_events` with idempotency keys, in the caller's transaction: an event whose key made
/// an event earlier (or earlier in this call) is that event; the others are fanned out.
async fn add_once_each(
    c: &impl GenericClient,
    account_id: i64,
    events: &[NewEvent],
    now_ms: i64,
) -> Result<(Vec<i64>, i64), ApiError> {
    let given: Vec<&str> = events
        .iter()
        .filter_map(|e| e.idempotency_key.as_deref())
        .collect();
    let earlier = earlier_events(c, account_id, &given, now_ms / 1000).await?;
    let mut new: Vec<(i64, &NewEvent)> = Vec::with_capacity(events.len());
    let mut placed = Vec::with_capacity(events.len());
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for e in events {
        if let Some(key) = e.idempotency_key.as_deref() {
            if let Some(&index) = keys.get(key) {
                placed.push(Placed::New(index));
                continue;
            }
            if let Some(&id) = earlier.get(key) {
                placed.push(Placed::Earlier(id));
                continue;
            }
            keys.insert(key, new.len());
        }
        placed.push(Placed::New(new.len()));
        new.push((account_id, e));
    }
    let Published { ids, queued, .. } = fan_out(c, &new, now_ms, None).await?;
    let ids = placed
        .into_iter()
        .map(|p| match p {
            Placed::Earlier(id) => id,
            Placed::New(index) => ids[index],
        })
        .collect();
    Ok((ids, queued))
}

impl Postgres {
    /// Stores events and fans them out, all or nothing; returns their ids in the order given.
    /// A repeated idempotency key (earlier, or earlier in the same call) returns the first
    /// event's id and creates nothing. Without idempotency keys a call is gathered with the
    /// calls that arrive beside it (`intake.rs`); with them, the keys are looked up first,
    /// under their locks, in the call's own transaction.
    pub async fn add_events(
        &self,
        account_id: i64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<i64>, ApiError> {
        if events.iter().all(|e| e.idempotency_key.is_none()) {
            return self.gathered_publish(account_id, events).await;
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (ids, queued) = add_once_each(&tx, account_id, &events, now_ms()).await?;
        tx.commit().await?;
        if queued > 0 {
            self.work_queued();
        }
        Ok(ids)
    }

    /// Publishes events without idempotency keys (each of its account) in one statement, its
    /// own transaction; returns their ids in the order given. What this node's engine offers
    /// to take is leased to it in that statement, and handed to it after the commit.
    pub(super) async fn publish_new(
        &self,
        events: &[(i64, &NewEvent)],
    ) -> Result<Vec<i64>, ApiError> {
        let handoff = self.waker.offer();
        let offer = handoff.as_ref().map(Handoff::offer);
        let published = fan_out(&self.client().await?, events, now_ms(), offer).await?;
        match handoff {
            Some(mut handoff) if !published.taken.is_empty() => {
                handoff.keep(published.taken.len());
                self.hand_over(handoff, events, &published); // and wakes the engine after
            }
            unused => {
                drop(unused); // its room is free again before the engine is woken
                if published.queued > 0 {
                    self.work_queued();
                }
            }
        }
        Ok(published.ids)
    }

    /// `testWebhook`: a `ping` event for one webhook, delivered now; returns the delivery id.
    pub async fn add_ping(&self, account_id: i64, webhook_id: i64) -> Result<i64, ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let webhook = super::webhooks::load(&tx, account_id, webhook_id, false).await?;
        let now_ms = now_ms();
        let delivery = row(
            &tx,
            "WITH ping AS (
               INSERT INTO events (account_id, object, event, list_id, contact_id, data,
                 creation_time, delivery_count)
               VALUES ($1, $2, $3, $4, NULL, '{}', $5, 1) RETURNING id)
             INSERT INTO deliveries (account_id, webhook_id, event_id, status, due_ms,
               creation_time)
             SELECT $1, $6, ping.id, 'pending', $7, $5 FROM ping RETURNING id",
            &[
                &account_id,
                &webhook.settings.object,
                &PING_EVENT,
                &webhook.settings.list_id,
                &(now_ms / 1000),
                &webhook_id,
                &now_ms,
            ],
        )
        .await?
        .try_get(0)?;
        tx.commit().await?;
        self.work_queued();
        Ok(delivery)
    }

    pub async fn event(&self, account_id: i64, id: i64) -> Result<EventRecord, ApiError> {
        row_opt(
            &self.client().await?,
            &format!("SELECT {COLUMNS} FROM events WHERE id = $1 AND account_id = $2"),
            &[&id, &account_id],
        )
        .await?
        .map(|r| event_record(&r))
        .unwrap_or(Err(ApiError::EventNotFound))
    }

    pub async fn search_events(
        &self,
        account_id: i64,
        criteria: Criteria,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<EventRecord>, ApiError> {
        let client = self.client().await?;
        super::filter::search(
            &client,
            COLUMNS,
            FROM,
            account_id,
            &criteria,
            (limit, offset),
        )
        .await?
        .iter()
        .map(event_record)
        .collect()
    }

    pub async fn count_events(&self, account_id: i64, criteria: Criteria) -> Result<i64, ApiError> {
        self.count(FROM, account_id, criteria).await
    }
}
