//! The SQL of the `webhooks` table.

use super::Sqlite;
use crate::error::ApiError;
use crate::model::{now_secs, BasicAuth, Events, JsonObject, WebhookRecord, WebhookSettings};
use crate::search::Criteria;
use crate::store::rules;
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

/// How long a rotated-out secret still signs (API.md §4).
const PREVIOUS_SECRET_SECS: i64 = 24 * 3600;

/// The webhooks a search sees: the account's, not deleted.
const LIVE: &str = "FROM webhooks WHERE account_id = ? AND deleted_time IS NULL";

const COLUMNS: &str = "id, name, description, object, events, list_id, url, headers, auth_username,
    auth_password, secret, is_active, batch_size, metadata, circuit_state, consecutive_failures,
    last_error_time, last_error_message, last_success_time, creation_time, last_modified_time";

fn record(r: &Row) -> rusqlite::Result<WebhookRecord> {
    let json = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let auth = match (
        r.get::<_, Option<String>>(8)?,
        r.get::<_, Option<String>>(9)?,
    ) {
        (Some(username), Some(password)) => Some(BasicAuth { username, password }),
        _ => None,
    };
    Ok(WebhookRecord {
        id: r.get(0)?,
        settings: WebhookSettings {
            name: r.get(1)?,
            description: r.get(2)?,
            object: r.get(3)?,
            events: events_of(&json(4)?),
            list_id: r.get(5)?,
            url: r.get(6)?,
            headers: serde_json::from_str(&json(7)?).unwrap_or_default(),
            auth,
            secret: r.get(10)?,
            is_active: r.get(11)?,
            batch_size: r.get(12)?,
            metadata: JsonObject::stored(json(13)?),
        },
        circuit_state: r.get(14)?,
        consecutive_failures: r.get(15)?,
        last_error_time: r.get(16)?,
        last_error_message: r.get(17)?,
        last_success_time: r.get(18)?,
        creation_time: r.get(19)?,
        last_modified_time: r.get(20)?,
    })
}

/// A stored `events` column (as written by [`settings_values`]; a row damaged by hand follows
/// nothing).
fn events_of(json: &str) -> Events {
    serde_json::from_str(json).unwrap_or(Events::Listed(Vec::new()))
}

/// A webhook's settings as bound values, in the column order of `INSERT` and `UPDATE` below
/// (name … metadata).
fn settings_values(s: &WebhookSettings) -> Result<[Sql; 13], ApiError> {
    let text = |t: &str| Sql::Text(t.to_owned());
    let optional = |t: Option<&String>| t.map_or(Sql::Null, |t| text(t));
    Ok([
        text(&s.name),
        text(&s.description),
        text(&s.object),
        Sql::Text(serde_json::to_string(&s.events)?),
        Sql::Integer(s.list_id),
        text(&s.url),
        Sql::Text(serde_json::to_string(&s.headers)?),
        optional(s.auth.as_ref().map(|a| &a.username)),
        optional(s.auth.as_ref().map(|a| &a.password)),
        text(&s.secret),
        Sql::Integer(i64::from(s.is_active)),
        Sql::Integer(s.batch_size),
        Sql::Text(s.metadata.as_str().to_owned()),
    ])
}

/// 351 when another live webhook of the account has the same object, list_id and url (but for
/// a fragment: [`WebhookSettings::receiver_url`]) and shares an event with `s` (the rule itself
/// is [`Events::overlaps`]). `except` is the webhook
/// being edited. Called inside the write transaction, before the write: the single writer
/// thread makes the check and the write one step. (A backend with concurrent writers must
/// serialise this per account, e.g. PostgreSQL by locking the account's row first.)
fn refuse_overlap(
    conn: &Connection,
    account_id: i64,
    except: i64,
    s: &WebhookSettings,
) -> Result<(), ApiError> {
    let mut stmt = conn.prepare_cached(
        "SELECT events FROM webhooks WHERE account_id = ?1 AND object = ?2 AND list_id = ?3
           AND substr(url, 1, instr(url || '#', '#') - 1) = ?4 AND deleted_time IS NULL
           AND id <> ?5",
    )?;
    let receiver = s.receiver_url();
    let mut rows = stmt.query(params![account_id, s.object, s.list_id, receiver, except])?;
    while let Some(row) = rows.next()? {
        if s.events.overlaps(&events_of(row.get_ref(0)?.as_str()?)) {
            return Err(ApiError::DuplicateWebhook);
        }
    }
    Ok(())
}

/// Makes `webhook_events` hold exactly what the webhook follows now (see migration 0005).
fn index_events(
    conn: &Connection,
    account_id: i64,
    webhook_id: i64,
    s: &WebhookSettings,
) -> Result<(), ApiError> {
    unindex_events(conn, webhook_id)?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO webhook_events (webhook_id, account_id, object, event) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for name in s.events.names() {
        insert.execute(params![webhook_id, account_id, s.object, name])?;
    }
    Ok(())
}

/// A deleted webhook follows nothing.
fn unindex_events(conn: &Connection, webhook_id: i64) -> Result<(), ApiError> {
    conn.prepare_cached("DELETE FROM webhook_events WHERE webhook_id = ?1")?
        .execute([webhook_id])?;
    Ok(())
}

/// Soft delete: the row stays so its deliveries keep pointing at something; its pending
/// deliveries are cancelled.
fn retire(conn: &Connection, webhook_id: i64) -> Result<(), ApiError> {
    conn.prepare_cached("UPDATE webhooks SET deleted_time = ?2, is_active = 0 WHERE id = ?1")?
        .execute(params![webhook_id, now_secs()])?;
    unindex_events(conn, webhook_id)?;
    cancel_pending(conn, webhook_id)
}

pub(super) fn load(conn: &Connection, account_id: i64, id: i64) -> Result<WebhookRecord, ApiError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE id = ?1 AND account_id = ?2 AND deleted_time IS NULL"
    ))?
    .query_row(params![id, account_id], record)
    .optional()?
    .ok_or(ApiError::WebhookNotFound)
}

/// Pending deliveries of a webhook that will get nothing any more become `cancelled`.
pub(super) fn cancel_pending(conn: &Connection, webhook_id: i64) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE deliveries SET status = 'cancelled', due_ms = NULL, final_time = ?2
         WHERE webhook_id = ?1 AND status = 'pending'",
    )?
    .execute(params![webhook_id, now_secs()])?;
    Ok(())
}

/// A webhook made active again starts afresh: its circuit closed, no failures counted (the
/// circuit that may have deactivated it would otherwise do so again at the first failure), and
/// answers to requests claimed before now held against it no more (its `activation` counts on).
fn restart_circuit(conn: &Connection, webhook_id: i64) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE webhooks SET circuit_state = 'closed', consecutive_failures = 0,
           next_probe_ms = NULL, circuit_opened_time = NULL, activation = activation + 1
         WHERE id = ?1",
    )?
    .execute(params![webhook_id])?;
    Ok(())
}

impl Sqlite {
    pub async fn add_webhook(
        &self,
        account_id: i64,
        s: WebhookSettings,
        max_webhooks: u32,
    ) -> Result<i64, ApiError> {
        self.write(move |conn| {
            let count: i64 = conn
                .prepare_cached("SELECT live_webhooks FROM accounts WHERE id = ?1")?
                .query_row([account_id], |r| r.get(0))?;
            if count >= i64::from(max_webhooks) {
                return Err(ApiError::WebhookLimit {
                    limit: max_webhooks,
                });
            }
            refuse_overlap(conn, account_id, 0, &s)?;
            let now = now_secs();
            conn.prepare_cached(
                "INSERT INTO webhooks (account_id, name, description, object, events, list_id, url,
                   headers, auth_username, auth_password, secret, is_active, batch_size, metadata,
                   creation_time, last_modified_time)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)",
            )?
            .execute(params_from_iter(
                [Sql::Integer(account_id)]
                    .into_iter()
                    .chain(settings_values(&s)?)
                    .chain([Sql::Integer(now)]),
            ))?;
            let id = conn.last_insert_rowid();
            index_events(conn, account_id, id, &s)?;
            Ok(id)
        })
        .await
    }

    pub async fn webhook(&self, account_id: i64, id: i64) -> Result<WebhookRecord, ApiError> {
        self.lookup(|conn| load(conn, account_id, id))
    }

    /// An edit: reads the webhook, merges the change into it (`merge` also validates the
    /// result) and stores it, all in one write transaction, so a call racing this one (a
    /// rotation, another edit, a 410 deactivation) is never undone by a stale read. A webhook
    /// that becomes inactive has its pending work cancelled. A new `secret` given by edit is a
    /// rotation too: the old one keeps signing for 24 h. Returns whether the edit changes the
    /// requests the webhook is sent ([`rules::changes_requests`]).
    pub async fn edit_webhook<F>(
        &self,
        account_id: i64,
        id: i64,
        merge: F,
    ) -> Result<bool, ApiError>
    where
        F: FnOnce(WebhookSettings) -> Result<WebhookSettings, ApiError> + Send + 'static,
    {
        self.write(move |conn| {
            let old = load(conn, account_id, id)?.settings;
            let reactivated = !old.is_active;
            let s = merge(old.clone())?;
            if !s.same_identity(&old) {
                refuse_overlap(conn, account_id, id, &s)?;
            }
            conn.prepare_cached(
                "UPDATE webhooks SET name = ?3, description = ?4, object = ?5, events = ?6, list_id = ?7,
                   url = ?8, headers = ?9, auth_username = ?10, auth_password = ?11, secret = ?12,
                   is_active = ?13, batch_size = ?14, metadata = ?15, last_modified_time = ?16,
                   previous_secret = CASE WHEN secret = ?12 THEN previous_secret ELSE secret END,
                   previous_secret_until =
                     CASE WHEN secret = ?12 THEN previous_secret_until ELSE ?16 + ?17 END
                 WHERE id = ?1 AND account_id = ?2",
            )?
            .execute(params_from_iter(
                [Sql::Integer(id), Sql::Integer(account_id)]
                    .into_iter()
                    .chain(settings_values(&s)?)
                    .chain([Sql::Integer(now_secs()), Sql::Integer(PREVIOUS_SECRET_SECS)]),
            ))?;
            index_events(conn, account_id, id, &s)?;
            if !s.is_active {
                cancel_pending(conn, id)?;
            } else if reactivated {
                restart_circuit(conn, id)?;
            }
            Ok(rules::changes_requests(&old, &s))
        })
        .await
    }

    /// Soft delete (see [`retire`]).
    pub async fn delete_webhook(&self, account_id: i64, id: i64) -> Result<(), ApiError> {
        self.write(move |conn| {
            load(conn, account_id, id)?;
            retire(conn, id)
        })
        .await
    }

    /// The old secret keeps signing beside the new one for 24 h, so receivers can switch over.
    pub async fn rotate_secret(
        &self,
        account_id: i64,
        id: i64,
        secret: String,
    ) -> Result<String, ApiError> {
        self.write(move |conn| {
            load(conn, account_id, id)?;
            let now = now_secs();
            conn.prepare_cached(
                "UPDATE webhooks SET previous_secret = secret, previous_secret_until = ?2,
                   secret = ?3, last_modified_time = ?4 WHERE id = ?1",
            )?
            .execute(params![id, now + PREVIOUS_SECRET_SECS, secret, now])?;
            Ok(secret)
        })
        .await
    }

    pub async fn search_webhooks(
        &self,
        account_id: i64,
        criteria: Criteria,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<WebhookRecord>, ApiError> {
        self.read(move |conn| {
            super::filter::search(
                conn,
                COLUMNS,
                LIVE,
                account_id,
                &criteria,
                (limit, offset),
                record,
            )
        })
        .await
    }

    pub async fn count_webhooks(
        &self,
        account_id: i64,
        criteria: Criteria,
    ) -> Result<i64, ApiError> {
        self.count(LIVE, account_id, criteria).await
    }

    /// Every live webhook's id, object and events (to check them against the catalog).
    pub async fn live_webhook_events(&self) -> Result<Vec<(i64, String, Events)>, ApiError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, object, events FROM webhooks WHERE deleted_time IS NULL ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, events_of(r.get_ref(2)?.as_str()?)))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Deletes webhooks as `deleteWebhook` does, whatever their account.
    pub async fn retire_webhooks(&self, ids: Vec<i64>) -> Result<(), ApiError> {
        self.write(move |conn| ids.into_iter().try_for_each(|id| retire(conn, id)))
            .await
    }
}
