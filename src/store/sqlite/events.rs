//! The SQL of the `events` table, and the fan-out: an event and its deliveries are written in
//! one transaction, and that commit is the acknowledgement (the outbox is the queue).

use super::Sqlite;
use crate::error::ApiError;
use crate::model::{now_ms, EventRecord, NewEvent, PING_EVENT};
use crate::search::Criteria;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::value::RawValue;

/// How long an idempotency key is remembered (API.md: 24 h).
const IDEMPOTENCY_SECS: i64 = 24 * 3600;

const FROM: &str = "FROM events WHERE account_id = ?";

const COLUMNS: &str =
    "id, object, event, list_id, contact_id, data, idempotency_key, creation_time, delivery_count";

fn event_record(r: &Row) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        id: r.get(0)?,
        object: r.get(1)?,
        event: r.get(2)?,
        list_id: r.get(3)?,
        contact_id: r.get(4)?,
        data: RawValue::from_string(r.get(5)?).unwrap_or_else(|_| RawValue::NULL.to_owned()),
        idempotency_key: r.get(6)?,
        creation_time: r.get(7)?,
        delivery_count: r.get(8)?,
    })
}

/// What a fan-out did.
struct Published {
    /// The events' ids, in the order given.
    ids: Vec<i64>,
    /// How many deliveries it queued.
    deliveries: usize,
}

/// Inserts one event and a delivery for each of `webhook_ids`, due now.
fn insert_event(
    conn: &Connection,
    account_id: i64,
    e: &NewEvent,
    webhook_ids: &[i64],
    now_ms: i64,
) -> Result<i64, ApiError> {
    let now = now_ms / 1000;
    conn.prepare_cached(
        "INSERT INTO events (account_id, object, event, list_id, contact_id, data, idempotency_key,
           creation_time, delivery_count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        account_id,
        e.object,
        e.event,
        e.list_id,
        e.contact_id,
        e.data.as_str().to_owned(),
        e.idempotency_key,
        now,
        webhook_ids.len() as i64,
    ])?;
    let event_id = conn.last_insert_rowid();
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries (account_id, webhook_id, event_id, status, due_ms, creation_time)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5)",
    )?;
    for webhook_id in webhook_ids {
        insert.execute(params![account_id, webhook_id, event_id, now_ms, now])?;
    }
    Ok(event_id)
}

/// The active webhooks an event reaches (API.md): of its account and object, following its
/// event or every event ('*'), watching its list or all lists. `webhook_events` holds one row
/// per live webhook and name, and '*' is never listed beside a name, so each webhook comes once.
fn matching_webhooks(
    conn: &Connection,
    account_id: i64,
    e: &NewEvent,
) -> Result<Vec<i64>, ApiError> {
    let mut stmt = conn.prepare_cached(
        "SELECT w.id FROM webhook_events f JOIN webhooks w ON w.id = f.webhook_id
         WHERE f.account_id = ?1 AND f.object = ?2 AND f.event IN (?3, '*')
           AND (w.list_id = 0 OR w.list_id = ?4) AND w.is_active = 1 AND w.deleted_time IS NULL
         ORDER BY w.id",
    )?;
    let ids = stmt.query_map(params![account_id, e.object, e.event, e.list_id], |r| {
        r.get(0)
    })?;
    Ok(ids.collect::<Result<_, _>>()?)
}

/// Stores one event and queues a delivery, due now, for each webhook it reaches; returns its id
/// and how many deliveries it queued.
fn publish_one(
    conn: &Connection,
    account_id: i64,
    e: &NewEvent,
    now_ms: i64,
) -> Result<(i64, usize), ApiError> {
    let webhooks = matching_webhooks(conn, account_id, e)?;
    let id = insert_event(conn, account_id, e, &webhooks, now_ms)?;
    Ok((id, webhooks.len()))
}

/// Publishes `events` inside the caller's transaction (operational events beside the change
/// they tell of); returns whether any delivery was queued, for the caller to wake the engine
/// once it has committed.
pub(super) fn publish(
    conn: &Connection,
    account_id: i64,
    events: &[NewEvent],
) -> Result<bool, ApiError> {
    let now_ms = now_ms();
    let mut queued = 0;
    for e in events {
        queued += publish_one(conn, account_id, e, now_ms)?.1;
    }
    Ok(queued > 0)
}

fn earlier_event(
    conn: &Connection,
    account_id: i64,
    key: &str,
    now: i64,
) -> Result<Option<i64>, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM events WHERE account_id = ?1 AND idempotency_key = ?2
               AND creation_time > ?3 ORDER BY id LIMIT 1",
        )?
        .query_row(params![account_id, key, now - IDEMPOTENCY_SECS], |r| {
            r.get(0)
        })
        .optional()?)
}

impl Sqlite {
    /// Stores events and fans them out, all or nothing; returns their ids in the order given.
    /// A repeated idempotency key returns the first event's id and creates nothing. The engine
    /// is woken once the commit queued deliveries (not otherwise: a wake-up costs a claim).
    pub async fn add_events(
        &self,
        account_id: i64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<i64>, ApiError> {
        let published = self
            .write(move |conn| {
                let now_ms = now_ms();
                let mut published = Published {
                    ids: Vec::with_capacity(events.len()),
                    deliveries: 0,
                };
                for e in &events {
                    let earlier = match &e.idempotency_key {
                        Some(key) => earlier_event(conn, account_id, key, now_ms / 1000)?,
                        None => None,
                    };
                    let id = match earlier {
                        Some(id) => id,
                        None => {
                            let (id, deliveries) = publish_one(conn, account_id, e, now_ms)?;
                            published.deliveries += deliveries;
                            id
                        }
                    };
                    published.ids.push(id);
                }
                Ok(published)
            })
            .await?;
        if published.deliveries > 0 {
            self.waker.wake();
        }
        Ok(published.ids)
    }

    /// `testWebhook`: a `ping` event for one webhook, delivered now; returns the delivery id.
    pub async fn add_ping(&self, account_id: i64, webhook_id: i64) -> Result<i64, ApiError> {
        self.write(move |conn| {
            let webhook = super::webhooks::load(conn, account_id, webhook_id)?;
            let ping = NewEvent {
                object: webhook.settings.object,
                event: PING_EVENT.to_owned(),
                list_id: webhook.settings.list_id,
                contact_id: None,
                data: crate::model::JsonObject::default(),
                idempotency_key: None,
            };
            insert_event(conn, account_id, &ping, &[webhook_id], now_ms())?;
            Ok(conn.last_insert_rowid())
        })
        .await
        .inspect(|_| self.waker.wake())
    }

    pub async fn event(&self, account_id: i64, id: i64) -> Result<EventRecord, ApiError> {
        self.lookup(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE id = ?1 AND account_id = ?2"
            ))?
            .query_row(params![id, account_id], event_record)
            .optional()?
            .ok_or(ApiError::EventNotFound)
        })
    }

    pub async fn search_events(
        &self,
        account_id: i64,
        criteria: Criteria,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<EventRecord>, ApiError> {
        self.read(move |conn| {
            super::filter::search(
                conn,
                COLUMNS,
                FROM,
                account_id,
                &criteria,
                (limit, offset),
                event_record,
            )
        })
        .await
    }

    pub async fn count_events(&self, account_id: i64, criteria: Criteria) -> Result<i64, ApiError> {
        self.count(FROM, account_id, criteria).await
    }
}
