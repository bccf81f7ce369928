//! Secrets at rest, for every backend at once. Webhook secrets (current and rotated-out) and
//! Basic-auth passwords are sealed here, before a backend sees them, and opened here where they
//! are used: in a claim (the engine signs and authenticates with them) and in a webhook read (a
//! full key is shown its secret). Backends store, compare and copy sealed text; none of them
//! sees the key. The AEAD itself is `crate::crypto`.

use super::{is_postgres_url, Backend, Store};
use crate::config::EncryptionKey;
use crate::crypto::{self, is_sealed, Sealer, SecretKey, SEALED_PREFIX};
use crate::error::ApiError;
use crate::model::{CircuitPolicy, Claim, Claimed, Room, Target, WebhookRecord, WebhookSettings};
use crate::search::Criteria;
use std::path::Path;
use std::sync::Arc;

/// The known text the key check seals: a database keeps it sealed with its key, so a wrong key
/// is refused at start, before anything is signed with secrets it would open as garbage (it
/// opens nothing at all: the AEAD refuses).
const KEY_CHECK: &str = "hookrpc encryption key check";
const KEY_CHECK_CONTEXT: &str = "hookrpc/v1/key-check";
/// Webhooks sealed per round trip when plain-text rows are sealed at start.
const SEAL_BATCH: i64 = 200;

/// What a webhook's sealed values are bound to (the AEAD's associated data). Not the webhook's
/// id: the database gives it at insert, after sealing; and a rotation moves the sealed current
/// secret into `previous_secret` in SQL without opening it, so both secret columns share one
/// context. The account is known before the insert, never changes, and is the line the API
/// keeps: a sealed secret copied into another account's row (or into a password column) does
/// not open there, so it cannot be read back through that account's full key.
fn secret_context(account_id: i64) -> String {
    format!("hookrpc/v1/account/{account_id}/webhook-secret")
}

fn password_context(account_id: i64) -> String {
    format!("hookrpc/v1/account/{account_id}/basic-auth-password")
}

/// A webhook's secret columns as stored: sealed, or plain text from before sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretColumns {
    pub webhook_id: i64,
    pub account_id: i64,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub password: Option<String>,
}

/// Seals and opens a deployment's secrets.
pub(crate) struct Secrets {
    sealer: Sealer,
}

impl Secrets {
    fn seal_settings(&self, account_id: i64, mut s: WebhookSettings) -> WebhookSettings {
        s.secret = self.sealer.seal(&s.secret, &secret_context(account_id));
        if let Some(auth) = &mut s.auth {
            auth.password = self
                .sealer
                .seal(&auth.password, &password_context(account_id));
        }
        s
    }

    fn open_settings(
        &self,
        account_id: i64,
        mut s: WebhookSettings,
    ) -> Result<WebhookSettings, ApiError> {
        s.secret = self.open(&s.secret, &secret_context(account_id))?;
        if let Some(auth) = &mut s.auth {
            auth.password = self.open(&auth.password, &password_context(account_id))?;
        }
        Ok(s)
    }

    /// The settings an edit stores: what did not change keeps its sealed text, what changed is
    /// sealed anew. (A backend tells a new secret from the old one by comparing the stored
    /// text, and a fresh seal of an unchanged secret would look like a rotation.)
    fn reseal(
        &self,
        account_id: i64,
        stored: &WebhookSettings,
        opened: &WebhookSettings,
        mut merged: WebhookSettings,
    ) -> WebhookSettings {
        merged.secret = match merged.secret == opened.secret {
            true => stored.secret.clone(),
            false => self
                .sealer
                .seal(&merged.secret, &secret_context(account_id)),
        };
        if let Some(auth) = &mut merged.auth {
            let unchanged = opened
                .auth
                .iter()
                .zip(&stored.auth)
                .find(|(before, _)| before.password == auth.password);
            auth.password = match unchanged {
                Some((_, stored)) => stored.password.clone(),
                None => self
                    .sealer
                    .seal(&auth.password, &password_context(account_id)),
            };
        }
        merged
    }

    fn open_target(&self, mut target: Target) -> Result<Target, ApiError> {
        let context = secret_context(target.account_id);
        for secret in &mut target.secrets {
            *secret = self.open(secret, &context)?;
        }
        if let Some(auth) = &mut target.auth {
            auth.password = self.open(&auth.password, &password_context(target.account_id))?;
        }
        Ok(target)
    }

    /// A stored value's plain text. Plain text from before sealing is taken as it is: every
    /// start seals what it finds, but a node of an older version in the same cluster may still
    /// write some until it is upgraded.
    fn open(&self, stored: &str, context: &str) -> Result<String, ApiError> {
        if !is_sealed(stored) {
            return Ok(stored.to_owned());
        }
        self.sealer.open(stored, context).map_err(|_| {
            ApiError::Internal(
                "a sealed secret does not open with this deployment's key (was it changed or \
                 moved in the database?)"
                    .into(),
            )
        })
    }

    /// The same columns with every plain-text value sealed.
    fn seal_columns(&self, plain: &SecretColumns) -> SecretColumns {
        let seal = |value: &str, context: &str| match is_sealed(value) {
            true => value.to_owned(),
            false => self.sealer.seal(value, context),
        };
        let (secret, password) = (
            secret_context(plain.account_id),
            password_context(plain.account_id),
        );
        SecretColumns {
            secret: seal(&plain.secret, &secret),
            previous_secret: plain.previous_secret.as_deref().map(|s| seal(s, &secret)),
            password: plain.password.as_deref().map(|p| seal(p, &password)),
            ..plain.clone()
        }
    }
}

/// Why secrets cannot be sealed and opened: the key is missing, malformed or wrong (the
/// operator must act; the server refuses to start), or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] ApiError),
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> ApiError {
        match e {
            KeyError::Refused(why) => ApiError::invalid("encryption_key", why),
            KeyError::Store(e) => e,
        }
    }
}

/// Where a key given on the command line (or in the environment) is said to come from.
pub const GIVEN_KEY: &str = "--encryption-key";

/// The deployment's key and where it came from (said in errors): the key given, or on SQLite
/// the key file beside the database, created only while the database has sealed nothing (a
/// lost key file must be restored, not quietly replaced by a new key).
pub(crate) fn deployment_key(
    db: &str,
    given: Option<&EncryptionKey>,
    sealed_before: bool,
) -> Result<(SecretKey, String), KeyError> {
    if let Some(given) = given {
        let key = SecretKey::from_base64(&given.0).map_err(KeyError::Refused)?;
        return Ok((key, GIVEN_KEY.to_owned()));
    }
    if is_postgres_url(db) {
        return Err(KeyError::Refused(
            "a PostgreSQL deployment must give its encryption key: --encryption-key or \
             HOOKRPC_ENCRYPTION_KEY (32 bytes in base64, the same on every node)"
                .into(),
        ));
    }
    let path = crypto::key_file_beside(Path::new(db));
    let origin = format!("key file {}", path.display());
    if let Some(key) = crypto::read_key_file(&path).map_err(KeyError::Refused)? {
        return Ok((key, origin));
    }
    if sealed_before {
        return Err(KeyError::Refused(format!(
            "this database's secrets are sealed, but {} is missing: restore it from your \
             backup, or give the key with --encryption-key",
            path.display()
        )));
    }
    let key = crypto::create_key_file(&path).map_err(KeyError::Refused)?;
    tracing::warn!(file = %path.display(), "created the encryption key file for webhook secrets: back it up, apart from the database");
    Ok((key, origin))
}

/// Refuses a key that does not open the database's key check.
pub(crate) fn verify_key(key: &SecretKey, check: &str, origin: &str) -> Result<(), KeyError> {
    match Sealer::new(key).open(check, KEY_CHECK_CONTEXT) {
        Ok(text) if text == KEY_CHECK => Ok(()),
        _ => Err(KeyError::Refused(format!(
            "the encryption key ({origin}) is not the key this database's secrets were sealed \
             with: start with that key (a copy of the database needs the key of the original)"
        ))),
    }
}

impl Store {
    /// Makes the store seal and open secrets with the deployment's key (see `deployment_key`
    /// in this module), once the key has opened the database's key check (written by the first
    /// start, or by the first of several nodes starting at once). Then every secret still in
    /// plain text is sealed. Until this, the store serves everything but secrets (what
    /// `hookrpc key …` needs).
    pub async fn unlock(
        mut self,
        db: &str,
        given: Option<&EncryptionKey>,
    ) -> Result<Store, KeyError> {
        let check = on_backend!(self, b => b.key_check().await)?;
        let (key, origin) = deployment_key(db, given, check.is_some())?;
        let check = match check {
            Some(check) => check,
            None => {
                let proposed = Sealer::new(&key).seal(KEY_CHECK, KEY_CHECK_CONTEXT);
                on_backend!(self, b => b.init_key_check(proposed).await)?
            }
        };
        verify_key(&key, &check, &origin)?;
        self.secrets = Some(Arc::new(Secrets {
            sealer: Sealer::new(&key),
        }));
        let sealed = self.seal_plain_secrets().await?;
        if sealed > 0 {
            on_backend!(self, b => b.scrub_after_sealing().await)?;
            tracing::info!(
                webhooks = sealed,
                "sealed the secrets and passwords that were stored in plain text"
            );
        }
        Ok(self)
    }

    /// Seals every secret and password still in plain text, a batch of webhooks at a time;
    /// returns how many webhooks changed. Run again, it finds nothing to do. A row that changed
    /// meanwhile (another node edited it) is left to that change.
    async fn seal_plain_secrets(&self) -> Result<u64, ApiError> {
        let secrets = self.secrets()?;
        let (mut after, mut sealed) = (0, 0);
        loop {
            let plain =
                on_backend!(self, b => b.plain_secrets(SEALED_PREFIX, after, SEAL_BATCH).await)?;
            let Some(last) = plain.last() else {
                return Ok(sealed);
            };
            after = last.webhook_id;
            let changes = plain
                .into_iter()
                .map(|old| {
                    let new = secrets.seal_columns(&old);
                    (old, new)
                })
                .collect();
            sealed += on_backend!(self, b => b.replace_secrets(changes).await)?;
        }
    }

    fn secrets(&self) -> Result<&Arc<Secrets>, ApiError> {
        self.secrets.as_ref().ok_or_else(|| {
            ApiError::Internal("the store was opened without its encryption key".into())
        })
    }

    /// 355 past `max_webhooks` live webhooks; 351 when another live webhook of the account has
    /// the same object, list_id and url and its events overlap ([`crate::model::Events::overlaps`]):
    /// checked and written in one transaction that no other write to the account can
    /// interleave with.
    pub async fn add_webhook(
        &self,
        account_id: i64,
        settings: WebhookSettings,
        max_webhooks: u32,
    ) -> Result<i64, ApiError> {
        let sealed = self.secrets()?.seal_settings(account_id, settings);
        on_backend!(self, b => b.add_webhook(account_id, sealed, max_webhooks).await)
    }

    /// The live webhook, its secret and password opened (what a caller may see of them is
    /// the view's business).
    pub async fn webhook(&self, account_id: i64, id: i64) -> Result<WebhookRecord, ApiError> {
        let stored = on_backend!(self, b => b.webhook(account_id, id).await)?;
        self.open_record(account_id, stored)
    }

    pub async fn search_webhooks(
        &self,
        account_id: i64,
        criteria: Criteria,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<WebhookRecord>, ApiError> {
        on_backend!(self, b => b.search_webhooks(account_id, criteria, limit, offset).await)?
            .into_iter()
            .map(|stored| self.open_record(account_id, stored))
            .collect()
    }

    fn open_record(
        &self,
        account_id: i64,
        mut r: WebhookRecord,
    ) -> Result<WebhookRecord, ApiError> {
        r.settings = self.secrets()?.open_settings(account_id, r.settings)?;
        Ok(r)
    }

    /// The old secret keeps signing beside the new one for 24 h; returns the new one.
    pub async fn rotate_secret(
        &self,
        account_id: i64,
        id: i64,
        secret: String,
    ) -> Result<String, ApiError> {
        let sealed = self
            .secrets()?
            .sealer
            .seal(&secret, &secret_context(account_id));
        on_backend!(self, b => b.rotate_secret(account_id, id, sealed).await)?;
        self.webhooks_changed(vec![id]);
        Ok(secret)
    }

    /// An edit: the webhook is read, `merge` turns its settings (secrets opened) into the new
    /// ones (and validates them), and the result is stored, all in one transaction. 351 when
    /// the result would overlap another live webhook (see `add_webhook`).
    pub async fn edit_webhook<F>(&self, account_id: i64, id: i64, merge: F) -> Result<(), ApiError>
    where
        F: FnOnce(WebhookSettings) -> Result<WebhookSettings, ApiError> + Send + 'static,
    {
        let secrets = self.secrets()?.clone();
        let sealed_merge = move |stored: WebhookSettings| {
            let opened = secrets.open_settings(account_id, stored.clone())?;
            let merged = merge(opened.clone())?;
            Ok(secrets.reseal(account_id, &stored, &opened, merged))
        };
        if on_backend!(self, b => b.edit_webhook(account_id, id, sealed_merge).await)? {
            self.webhooks_changed(vec![id]);
        }
        Ok(())
    }

    /// The engine's claim: up to `limit` due deliveries, leased, in batches per webhook, opened
    /// as [`Store::open_claims`] says.
    pub async fn claim_due(
        &self,
        limit: usize,
        room: Room,
        lease_ms: i64,
        circuit: CircuitPolicy,
    ) -> Result<Claimed, ApiError> {
        self.secrets()?; // not unlocked: nothing is claimed that could not be sent
        let claimed = on_backend!(self, b => b.claim_due(limit, room, lease_ms, circuit).await)?;
        Ok(Claimed {
            claims: self.open_claims(claimed.claims),
            ..claimed
        })
    }

    /// Claims with the secrets and password each batch is sent with opened. A batch whose
    /// secrets do not open (a damaged row, or a store not unlocked) is left to its lease and
    /// logged: one webhook cannot stop delivery for the others.
    pub fn open_claims(&self, claims: Vec<Claim>) -> Vec<Claim> {
        let secrets = match self.secrets() {
            Ok(secrets) => secrets,
            Err(e) => {
                tracing::error!(error = %e, "cannot open webhooks' secrets");
                return Vec::new();
            }
        };
        claims
            .into_iter()
            .filter_map(|mut claim| {
                let webhook_id = claim.target.webhook_id;
                match secrets.open_target(claim.target) {
                    Ok(target) => {
                        claim.target = target;
                        Some(claim)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, webhook_id, "cannot open the webhook's secrets");
                        None
                    }
                }
            })
            .collect()
    }
}
