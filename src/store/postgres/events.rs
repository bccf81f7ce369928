//! The SQL of the `events` table, and the fan-out: events and their deliveries are written in
//! one transaction, and its commit is the acknowledgement (the outbox is the queue). A call's
//! events go in with one statement, and their deliveries with another, whatever their number.

use super::{exec, notify_work, row_opt, rows, Postgres};
use crate::error::ApiError;
use crate::model::{now_ms, EventRecord, NewEvent, PING_EVENT};
use crate::search::Criteria;
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

/// An event to insert, and the webhooks it goes to.
struct Fanned<'a> {
    event: &'a NewEvent,
    webhooks: Vec<i64>,
}

/// Inserts the events (one statement) and a delivery, due now, for each of their webhooks
/// (one more); returns the events' ids in the order given and the deliveries' ids.
async fn insert_events(
    c: &impl GenericClient,
    account_id: i64,
    fanned: &[Fanned<'_>],
    now_ms: i64,
) -> Result<(Vec<i64>, Vec<i64>), ApiError> {
    if fanned.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let column = |f: fn(&Fanned) -> String| fanned.iter().map(f).collect::<Vec<_>>();
    let objects = column(|f| f.event.object.clone());
    let names = column(|f| f.event.event.clone());
    let lists: Vec<i64> = fanned.iter().map(|f| f.event.list_id).collect();
    let contacts: Vec<Option<i64>> = fanned.iter().map(|f| f.event.contact_id).collect();
    let data = fanned
        .iter()
        .map(|f| serde_json::to_string(&f.event.data))
        .collect::<Result<Vec<_>, _>>()?;
    let keys: Vec<Option<String>> = fanned
        .iter()
        .map(|f| f.event.idempotency_key.clone())
        .collect();
    let counts: Vec<i64> = fanned.iter().map(|f| f.webhooks.len() as i64).collect();
    let now = now_ms / 1000;
    let inserted = rows(
        c,
        "INSERT INTO events (account_id, object, event, list_id, contact_id, data,
           idempotency_key, creation_time, delivery_count)
         SELECT $1, object, event, list_id, contact_id, data, idempotency_key, $2, delivery_count
         FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[],
                     $9::bigint[]) WITH ORDINALITY
           AS e(object, event, list_id, contact_id, data, idempotency_key, delivery_count, n)
         ORDER BY n RETURNING id",
        &[
            &account_id,
            &now,
            &objects,
            &names,
            &lists,
            &contacts,
            &data,
            &keys,
            &counts,
        ],
    )
    .await?;
    // Identities are drawn in insertion order, which is the order given.
    let mut ids = inserted
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<i64>, _>>()?;
    ids.sort_unstable();
    let (webhook_ids, event_ids): (Vec<i64>, Vec<i64>) = fanned
        .iter()
        .zip(&ids)
        .flat_map(|(f, id)| f.webhooks.iter().map(move |w| (*w, *id)))
        .unzip();
    if webhook_ids.is_empty() {
        return Ok((ids, Vec::new()));
    }
    let deliveries = rows(
        c,
        "INSERT INTO deliveries (account_id, webhook_id, event_id, status, due_ms, creation_time)
         SELECT $1, webhook_id, event_id, 'pending', $2, $3
         FROM unnest($4::bigint[], $5::bigint[]) AS d(webhook_id, event_id) RETURNING id",
        &[&account_id, &now_ms, &now, &webhook_ids, &event_ids],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<Vec<i64>, _>>()?;
    Ok((ids, deliveries))
}

/// The active webhooks an event reaches: of its account and object, following its event or
/// every event ('*'), watching its list or all lists.
async fn matching_webhooks(
    c: &impl GenericClient,
    account_id: i64,
    e: &NewEvent,
) -> Result<Vec<i64>, ApiError> {
    rows(
        c,
        "SELECT w.id FROM webhook_events f JOIN webhooks w ON w.id = f.webhook_id
         WHERE f.account_id = $1 AND f.object = $2 AND f.event IN ($3, '*')
           AND (w.list_id = 0 OR w.list_id = $4) AND w.is_active AND w.deleted_time IS NULL
         ORDER BY w.id",
        &[&account_id, &e.object, &e.event, &e.list_id],
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect()
}

/// The event an idempotency key already made, if any. The key's lock (held to the end of the
/// transaction) makes a second call with the same key, on any node, wait for the first.
async fn earlier_event(
    c: &impl GenericClient,
    account_id: i64,
    key: &str,
    now: i64,
) -> Result<Option<i64>, ApiError> {
    exec(
        c,
        "SELECT pg_advisory_xact_lock(hashtextextended($1::bigint || ':' || $2, 0))",
        &[&account_id, &key],
    )
    .await?;
    row_opt(
        c,
        "SELECT id FROM events WHERE account_id = $1 AND idempotency_key = $2
           AND creation_time > $3 ORDER BY id LIMIT 1",
        &[&account_id, &key, &(now - IDEMPOTENCY_SECS)],
    )
    .await?
    .map(|r| Ok(r.try_get(0)?))
    .transpose()
}

/// Where each event of a call went: an earlier event (idempotency), or a new one.
enum Placed {
    Earlier(i64),
    /// The index among the call's new events.
    New(usize),
}

impl Postgres {
    /// Stores events and fans them out, all or nothing; returns their ids in the order given.
    /// A repeated idempotency key (earlier, or earlier in the same call) returns the first
    /// event's id and creates nothing.
    pub async fn add_events(
        &self,
        account_id: i64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<i64>, ApiError> {
        let now_ms = now_ms();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut fanned: Vec<Fanned> = Vec::with_capacity(events.len());
        let mut placed = Vec::with_capacity(events.len());
        let mut keys: HashMap<&str, usize> = HashMap::new();
        let mut targets: HashMap<(&str, &str, i64), Vec<i64>> = HashMap::new();
        for e in &events {
            if let Some(key) = e.idempotency_key.as_deref() {
                if let Some(&index) = keys.get(key) {
                    placed.push(Placed::New(index));
                    continue;
                }
                if let Some(id) = earlier_event(&tx, account_id, key, now_ms / 1000).await? {
                    placed.push(Placed::Earlier(id));
                    continue;
                }
                keys.insert(key, fanned.len());
            }
            let target = (e.object.as_str(), e.event.as_str(), e.list_id);
            let webhooks = match targets.get(&target) {
                Some(found) => found.clone(),
                None => matching_webhooks(&tx, account_id, e).await?,
            };
            targets.insert(target, webhooks.clone());
            placed.push(Placed::New(fanned.len()));
            fanned.push(Fanned { event: e, webhooks });
        }
        let (ids, deliveries) = insert_events(&tx, account_id, &fanned, now_ms).await?;
        if !deliveries.is_empty() {
            notify_work(&tx).await?;
        }
        tx.commit().await?;
        if !deliveries.is_empty() {
            self.waker.wake();
        }
        Ok(placed
            .into_iter()
            .map(|p| match p {
                Placed::Earlier(id) => id,
                Placed::New(index) => ids[index],
            })
            .collect())
    }

    /// `testWebhook`: a `ping` event for one webhook, delivered now; returns the delivery id.
    pub async fn add_ping(&self, account_id: i64, webhook_id: i64) -> Result<i64, ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let webhook = super::webhooks::load(&tx, account_id, webhook_id, false).await?;
        let ping = NewEvent {
            object: webhook.settings.object,
            event: PING_EVENT.to_owned(),
            list_id: webhook.settings.list_id,
            contact_id: None,
            data: serde_json::Map::new(),
            idempotency_key: None,
        };
        let fanned = [Fanned {
            event: &ping,
            webhooks: vec![webhook_id],
        }];
        let (_, deliveries) = insert_events(&tx, account_id, &fanned, now_ms()).await?;
        notify_work(&tx).await?;
        tx.commit().await?;
        self.waker.wake();
        deliveries
            .first()
            .copied()
            .ok_or_else(|| ApiError::Internal("ping inserted no delivery".into()))
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
