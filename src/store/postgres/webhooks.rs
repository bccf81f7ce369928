//! The SQL of the `webhooks` table. A read-merge-write (an edit, a rotation) locks the row it
//! read (`FOR NO KEY UPDATE`), so a call racing it on any node waits instead of being undone.

use super::{announce_change, exec, row, row_opt, rows, Postgres};
use crate::error::ApiError;
use crate::model::{now_secs, BasicAuth, Events, JsonObject, WebhookRecord, WebhookSettings};
use crate::search::Criteria;
use crate::store::rules;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

/// How long a rotated-out secret still signs (API.md §4).
const PREVIOUS_SECRET_SECS: i64 = 24 * 3600;

/// The webhooks a search sees: the account's, not deleted.
const LIVE: &str = "FROM webhooks WHERE account_id = $1 AND deleted_time IS NULL";

const COLUMNS: &str = "id, name, description, object, events, list_id, url, headers, auth_username,
    auth_password, secret, is_active, batch_size, metadata, circuit_state, consecutive_failures,
    last_error_time, last_error_message, last_success_time, creation_time, last_modified_time";

fn record(r: &Row) -> Result<WebhookRecord, ApiError> {
    let auth = match (r.try_get(8)?, r.try_get(9)?) {
        (Some(username), Some(password)) => Some(BasicAuth { username, password }),
        _ => None,
    };
    Ok(WebhookRecord {
        id: r.try_get(0)?,
        settings: WebhookSettings {
            name: r.try_get(1)?,
            description: r.try_get(2)?,
            object: r.try_get(3)?,
            events: events_of(r.try_get(4)?),
            list_id: r.try_get(5)?,
            url: r.try_get(6)?,
            headers: serde_json::from_str(r.try_get(7)?).unwrap_or_default(),
            auth,
            secret: r.try_get(10)?,
            is_active: r.try_get(11)?,
            batch_size: r.try_get(12)?,
            metadata: JsonObject::stored(r.try_get(13)?),
        },
        circuit_state: r.try_get(14)?,
        consecutive_failures: r.try_get(15)?,
        last_error_time: r.try_get(16)?,
        last_error_message: r.try_get(17)?,
        last_success_time: r.try_get(18)?,
        creation_time: r.try_get(19)?,
        last_modified_time: r.try_get(20)?,
    })
}

/// A stored `events` column (a row damaged by hand follows nothing).
fn events_of(json: &str) -> Events {
    serde_json::from_str(json).unwrap_or(Events::Listed(Vec::new()))
}

/// A webhook's settings as the values bound for `INSERT` and `UPDATE` below.
struct Values {
    events: String,
    headers: String,
    metadata: String,
    username: Option<String>,
    password: Option<String>,
}

impl Values {
    fn of(s: &WebhookSettings) -> Result<Values, ApiError> {
        Ok(Values {
            events: serde_json::to_string(&s.events)?,
            headers: serde_json::to_string(&s.headers)?,
            metadata: s.metadata.as_str().to_owned(),
            username: s.auth.as_ref().map(|a| a.username.clone()),
            password: s.auth.as_ref().map(|a| a.password.clone()),
        })
    }

    /// In the column order name … metadata.
    fn params<'a>(
        &'a self,
        s: &'a WebhookSettings,
    ) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 13] {
        [
            &s.name,
            &s.description,
            &s.object,
            &self.events,
            &s.list_id,
            &s.url,
            &self.headers,
            &self.username,
            &self.password,
            &s.secret,
            &s.is_active,
            &s.batch_size,
            &self.metadata,
        ]
    }
}

/// 351 when another live webhook of the account has the same object, list_id and url (but for
/// a fragment: [`WebhookSettings::receiver_url`]) and shares an event with `s` (the rule is
/// [`Events::overlaps`]); `except` is the webhook being
/// edited. The caller holds the account's row lock, so two nodes cannot both pass the check.
async fn refuse_overlap(
    c: &impl GenericClient,
    account_id: i64,
    except: i64,
    s: &WebhookSettings,
) -> Result<(), ApiError> {
    let others = rows(
        c,
        "SELECT events FROM webhooks WHERE account_id = $1 AND object = $2 AND list_id = $3
           AND split_part(url, '#', 1) = $4 AND deleted_time IS NULL AND id <> $5",
        &[
            &account_id,
            &s.object,
            &s.list_id,
            &s.receiver_url(),
            &except,
        ],
    )
    .await?;
    for other in others {
        if s.events.overlaps(&events_of(other.try_get(0)?)) {
            return Err(ApiError::DuplicateWebhook);
        }
    }
    Ok(())
}

/// Locks the account's row: the per-account limit and the overlap rule are checked under it.
async fn lock_account(c: &impl GenericClient, account_id: i64) -> Result<i64, ApiError> {
    Ok(row(
        c,
        "SELECT live_webhooks FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
        &[&account_id],
    )
    .await?
    .try_get(0)?)
}

/// Makes `webhook_events` hold exactly what the webhook follows now.
async fn index_events(
    c: &impl GenericClient,
    account_id: i64,
    webhook_id: i64,
    s: &WebhookSettings,
) -> Result<(), ApiError> {
    unindex_events(c, webhook_id).await?;
    exec(
        c,
        "INSERT INTO webhook_events (webhook_id, account_id, object, event)
         SELECT $1, $2, $3, unnest($4::text[])",
        &[&webhook_id, &account_id, &s.object, &s.events.names()],
    )
    .await?;
    Ok(())
}

/// A deleted webhook follows nothing.
async fn unindex_events(c: &impl GenericClient, webhook_id: i64) -> Result<(), ApiError> {
    exec(
        c,
        "DELETE FROM webhook_events WHERE webhook_id = $1",
        &[&webhook_id],
    )
    .await?;
    Ok(())
}

/// The live webhook, locked for the rest of the transaction when `lock`.
pub(super) async fn load(
    c: &impl GenericClient,
    account_id: i64,
    id: i64,
    lock: bool,
) -> Result<WebhookRecord, ApiError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND account_id = $2 AND deleted_time IS NULL{}",
        if lock { " FOR NO KEY UPDATE" } else { "" }
    );
    row_opt(c, &sql, &[&id, &account_id])
        .await?
        .map(|r| record(&r))
        .unwrap_or(Err(ApiError::WebhookNotFound))
}

/// Pending deliveries of a webhook that will get nothing any more become `cancelled`. They are
/// locked in the order of their ids, as a record locks the deliveries it moves on: in the order
/// of the index on due times, an edit that cancels and a record of the same webhook's
/// deliveries (not holding its row when it has nothing to change there) could each wait for a
/// row the other holds, and PostgreSQL aborted one of them (`editWebhook` failed with 100).
pub(super) async fn cancel_pending(
    c: &impl GenericClient,
    webhook_id: i64,
) -> Result<(), ApiError> {
    exec(
        c,
        "UPDATE deliveries d SET status = 'cancelled', due_ms = NULL, final_time = $2
         FROM (SELECT id FROM deliveries WHERE webhook_id = $1 AND status = 'pending'
               ORDER BY id FOR NO KEY UPDATE) doomed
         WHERE d.id = doomed.id AND d.status = 'pending'",
        &[&webhook_id, &now_secs()],
    )
    .await?;
    Ok(())
}

/// A webhook made active again starts afresh: its circuit closed, no failures counted (the
/// circuit that may have deactivated it would otherwise do so again at the first failure), and
/// answers to requests claimed before now held against it no more (its `activation` counts on).
async fn restart_circuit(c: &impl GenericClient, webhook_id: i64) -> Result<(), ApiError> {
    exec(
        c,
        "UPDATE webhooks SET circuit_state = 'closed', consecutive_failures = 0,
           next_probe_ms = NULL, circuit_opened_time = NULL, activation = activation + 1
         WHERE id = $1",
        &[&webhook_id],
    )
    .await?;
    Ok(())
}

/// Soft delete: the row stays so its deliveries keep pointing at something; its pending
/// deliveries are cancelled.
async fn retire(c: &impl GenericClient, id: i64) -> Result<(), ApiError> {
    exec(
        c,
        "UPDATE webhooks SET deleted_time = $2, is_active = false WHERE id = $1",
        &[&id, &now_secs()],
    )
    .await?;
    unindex_events(c, id).await?;
    cancel_pending(c, id).await?;
    announce_change(c, id).await
}

impl Postgres {
    /// The per-account limit is checked under the account row's lock, so two nodes adding
    /// webhooks for one account at once cannot both take the last place.
    pub async fn add_webhook(
        &self,
        account_id: i64,
        s: WebhookSettings,
        max_webhooks: u32,
    ) -> Result<i64, ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if lock_account(&tx, account_id).await? >= i64::from(max_webhooks) {
            return Err(ApiError::WebhookLimit {
                limit: max_webhooks,
            });
        }
        refuse_overlap(&tx, account_id, 0, &s).await?;
        let values = Values::of(&s)?;
        let now = now_secs();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&account_id];
        params.extend(values.params(&s));
        params.push(&now);
        let id: i64 = row(
            &tx,
            "INSERT INTO webhooks (account_id, name, description, object, events, list_id, url,
               headers, auth_username, auth_password, secret, is_active, batch_size, metadata,
               creation_time, last_modified_time)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)
             RETURNING id",
            &params,
        )
        .await?
        .try_get(0)?;
        index_events(&tx, account_id, id, &s).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn webhook(&self, account_id: i64, id: i64) -> Result<WebhookRecord, ApiError> {
        load(&self.client().await?, account_id, id, false).await
    }

    /// An edit: reads the webhook with its row locked, merges the change into it (`merge`
    /// also validates the result) and stores it, in one transaction, so a call racing this
    /// one on any node (a rotation, another edit, a 410 deactivation) is never undone by a
    /// stale read. A webhook that becomes inactive has its pending work cancelled. A new
    /// `secret` given by edit is a rotation too: the old one keeps signing for 24 h. Returns
    /// whether the edit changes the requests the webhook is sent ([`rules::changes_requests`]).
    pub async fn edit_webhook<F>(
        &self,
        account_id: i64,
        id: i64,
        merge: F,
    ) -> Result<bool, ApiError>
    where
        F: FnOnce(WebhookSettings) -> Result<WebhookSettings, ApiError> + Send + 'static,
    {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let old = load(&tx, account_id, id, true).await?.settings;
        let reactivated = !old.is_active;
        let s = merge(old.clone())?;
        // The webhook's row first, then the account's: the order a delete takes them in.
        lock_account(&tx, account_id).await?;
        if !s.same_identity(&old) {
            refuse_overlap(&tx, account_id, id, &s).await?;
        }
        let values = Values::of(&s)?;
        let now = now_secs();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id, &account_id];
        params.extend(values.params(&s));
        params.push(&now);
        params.push(&PREVIOUS_SECRET_SECS);
        exec(
            &tx,
            "UPDATE webhooks SET name = $3, description = $4, object = $5, events = $6, list_id = $7,
               url = $8, headers = $9, auth_username = $10, auth_password = $11, secret = $12,
               is_active = $13, batch_size = $14, metadata = $15, last_modified_time = $16,
               previous_secret = CASE WHEN secret = $12 THEN previous_secret ELSE secret END,
               previous_secret_until =
                 CASE WHEN secret = $12 THEN previous_secret_until ELSE $16::bigint + $17::bigint END
             WHERE id = $1 AND account_id = $2",
            &params,
        )
        .await?;
        index_events(&tx, account_id, id, &s).await?;
        if !s.is_active {
            cancel_pending(&tx, id).await?;
        } else if reactivated {
            restart_circuit(&tx, id).await?;
        }
        let changes_requests = rules::changes_requests(&old, &s);
        if changes_requests {
            announce_change(&tx, id).await?;
        }
        tx.commit().await?;
        Ok(changes_requests)
    }

    /// Soft delete: the row stays so its deliveries keep pointing at something.
    pub async fn delete_webhook(&self, account_id: i64, id: i64) -> Result<(), ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        load(&tx, account_id, id, true).await?;
        retire(&tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The old secret keeps signing beside the new one for 24 h, so receivers can switch over.
    pub async fn rotate_secret(
        &self,
        account_id: i64,
        id: i64,
        secret: String,
    ) -> Result<String, ApiError> {
        let now = now_secs();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rotated = exec(
            &tx,
            "UPDATE webhooks SET previous_secret = secret, previous_secret_until = $3,
               secret = $4, last_modified_time = $5
             WHERE id = $1 AND account_id = $2 AND deleted_time IS NULL",
            &[
                &id,
                &account_id,
                &(now + PREVIOUS_SECRET_SECS),
                &secret,
                &now,
            ],
        )
        .await?;
        if rotated == 0 {
            return Err(ApiError::WebhookNotFound);
        }
        announce_change(&tx, id).await?;
        tx.commit().await?;
        Ok(secret)
    }

    pub async fn search_webhooks(
        &self,
        account_id: i64,
        criteria: Criteria,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<WebhookRecord>, ApiError> {
        let client = self.client().await?;
        super::filter::search(
            &client,
            COLUMNS,
            LIVE,
            account_id,
            &criteria,
            (limit, offset),
        )
        .await?
        .iter()
        .map(record)
        .collect()
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
        rows(
            &self.client().await?,
            "SELECT id, object, events FROM webhooks WHERE deleted_time IS NULL ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, events_of(r.try_get(2)?))))
        .collect()
    }

    /// Deletes webhooks as `deleteWebhook` does, whatever their account.
    pub async fn retire_webhooks(&self, ids: Vec<i64>) -> Result<(), ApiError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        for id in ids {
            retire(&tx, id).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
