//! The store: the one interface the rest of the crate sees for everything that is kept. Its
//! signatures carry typed inputs and records (`model`, `search::Criteria`) and no driver type;
//! each backend owns its SQL and converts its driver's errors inside itself: SQLite
//! (`sqlite/`), embedded, for one node; PostgreSQL (`postgres/`), for a cluster of nodes.

/// Runs `$call` with `$b` bound to the backend in use.
macro_rules! on_backend {
    ($store:expr, $b:ident => $call:expr) => {
        match &$store.backend {
            Backend::Sqlite($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

pub mod copy;
mod fields;
mod operational;
mod postgres;
pub mod retention;
mod rules;
mod secrets;
mod sqlite;

pub use fields::{DELIVERY_FIELDS, EVENT_FIELDS, WEBHOOK_FIELDS};
pub use secrets::{KeyError, GIVEN_KEY};

use crate::error::ApiError;
use crate::model::{
    Access, Caller, CircuitPolicy, Claim, DeliveryRecord, EventRecord, Events, NewEvent, Offer,
    Outcome, StatsCell, StatsQuery,
};
use crate::search::Criteria;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Seals and opens secrets once [`Store::unlock`] has checked the key (store/secrets.rs).
    secrets: Option<Arc<secrets::Secrets>>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// `db` as it may be logged: a database url without its password.
pub fn redacted(db: &str) -> String {
    match url::Url::parse(db) {
        Ok(mut url) if is_postgres_url(db) && url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => db.to_owned(),
    }
}

/// What the store is opened for.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// A server: `readers` read connections (SQLite); on PostgreSQL, it listens for other
    /// nodes' work.
    Serve { readers: usize },
    /// A one-off command (`hookrpc key …`).
    Command,
}

/// True when `--db` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// The store's way to this node's delivery engine: woken after a commit that queued work for
/// it, and (by PostgreSQL's intake) handed work as it is queued (see [`Taker`]).
#[derive(Clone, Default)]
pub struct Waker {
    ring: Arc<Notify>,
    taker: Arc<Mutex<Option<Arc<dyn Taker>>>>,
}

impl Waker {
    pub fn wake(&self) {
        self.ring.notify_one();
    }

    /// Resolves at the next wake-up (or at once, if one came since the last).
    pub async fn woken(&self) {
        self.ring.notified().await
    }

    /// Makes `taker` the engine that work is handed to (in place of any before it).
    pub fn hand_to(&self, taker: Arc<dyn Taker>) {
        *self.taker.lock().unwrap_or_else(|p| p.into_inner()) = Some(taker);
    }

    /// After the commit of a change to webhooks: work for them that the engine read before it
    /// must not go out as read (see [`Taker::webhooks_changed`]).
    pub fn webhooks_changed(&self, changed: Changed) {
        let taker = self.taker.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(taker) = taker {
            taker.webhooks_changed(changed);
        }
    }

    /// What the engine takes now, if it takes anything (see [`Taker::offer`]).
    pub fn offer(&self) -> Option<Handoff> {
        let taker = self
            .taker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let offer = taker.offer()?;
        Some(Handoff {
            taker,
            offer: Some(offer),
        })
    }
}

/// An engine that takes work as it is queued: the statement that queues deliveries leases
/// them to this node at once, and they are handed over after its commit, so no claim (a
/// write per delivery) is needed for them. A crash between the commit and the send leaves
/// leases that expire, as a claim's would.
pub trait Taker: Send + Sync {
    /// What the engine would take now; the room offered is held for it until given back or
    /// taken up. None when it takes nothing (stopping, or holding all it may).
    fn offer(&self) -> Option<Offer>;
    /// Room offered that the write did not use.
    fn give_back(&self, unused: usize);
    /// The deliveries leased under `offer` (none if the write failed), secrets still sealed;
    /// the room it still holds is free again.
    fn take(&self, offer: Offer, claims: Vec<Claim>);
    /// Webhooks changed (edited, rotated, turned off or on, deleted), and the change is
    /// committed: work for them read before it may be out of date (the url, the secrets) or
    /// no longer wanted (its deliveries cancelled). The engine sends none of it as it was read.
    fn webhooks_changed(&self, changed: Changed);
}

/// Which webhooks changed.
#[derive(Debug)]
pub enum Changed {
    Webhooks(Vec<i64>),
    /// Any of them may have: changes could have been missed (on PostgreSQL, while the
    /// connection that hears other nodes' changes was lost).
    Any,
}

/// An offer being used: hand the work over with [`Handoff::hand`]; dropped unused (the write
/// failed), it gives the room offered back.
pub struct Handoff {
    taker: Arc<dyn Taker>,
    offer: Option<Offer>,
}

impl Handoff {
    pub fn offer(&self) -> &Offer {
        self.offer.as_ref().expect("an offer until handed")
    }

    /// The write leased `taken` deliveries: the rest of the room offered is given back now,
    /// not after the hand-over's round trip.
    pub fn keep(&mut self, taken: usize) {
        if let Some(offer) = &mut self.offer {
            let unused = offer.most.saturating_sub(taken);
            offer.most -= unused;
            self.taker.give_back(unused);
        }
    }

    pub fn hand(mut self, claims: Vec<Claim>) {
        if let Some(offer) = self.offer.take() {
            self.taker.take(offer, claims);
        }
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(offer) = self.offer.take() {
            self.taker.take(offer, Vec::new());
        }
    }
}

/// A key as `key list` shows it (never the key itself).
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub prefix: String,
    pub account: String,
    pub access: Access,
    pub creation_time: i64,
    pub revoked_time: Option<i64>,
}

/// What is stored of a key: its SHA-256, never the key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A key as `key revoke` names it: the whole key (found by its hash) or its first characters
/// (up to the 8 that `key list` shows).
pub(crate) struct KeyPrefix {
    /// The whole key's hash, or empty.
    pub hash: String,
    /// The first characters, or empty.
    pub short: String,
}

impl KeyPrefix {
    pub fn parse(prefix: &str) -> Result<KeyPrefix, ApiError> {
        let given = prefix.to_ascii_lowercase();
        if given.len() < 4 || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::invalid(
                "prefix",
                "give at least 4 hex characters of the key",
            ));
        }
        Ok(if given.len() == 64 {
            KeyPrefix {
                hash: hash_key(&given),
                short: String::new(),
            }
        } else {
            KeyPrefix {
                hash: String::new(),
                short: given.chars().take(8).collect(),
            }
        })
    }

    /// The one live key it names, of the live keys `found` to match it: an ambiguous prefix
    /// names none.
    pub fn only_one<'a, T>(&self, found: &'a [T]) -> Result<&'a T, ApiError> {
        match found {
            [one] => Ok(one),
            [] => Err(ApiError::invalid(
                "prefix",
                "no live key starts with that prefix",
            )),
            _ => Err(ApiError::invalid(
                "prefix",
                "more than one key starts with that prefix",
            )),
        }
    }
}

/// `retryDelivery`'s rule: only a failed or cancelled delivery is retried, and only while its
/// webhook is active (not deleted).
pub(crate) fn check_retryable(status: &str, webhook_active: bool) -> Result<(), ApiError> {
    if status != "failed" && status != "cancelled" {
        return Err(ApiError::invalid(
            "delivery_id",
            format!("only a failed or cancelled delivery can be retried; this one is {status}"),
        ));
    }
    if !webhook_active {
        return Err(ApiError::invalid(
            "delivery_id",
            "its webhook is inactive or deleted: activate it first",
        ));
    }
    Ok(())
}

/// A new key: 32 random bytes as 64 lowercase hex characters.
fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Store {
    /// Opens the database `db` names (a `postgres://` url, or else a SQLite file, created if
    /// needed), applies migrations and starts its workers.
    pub async fn open(db: &str, purpose: Purpose) -> Result<Store, ApiError> {
        let backend = match (is_postgres_url(db), purpose) {
            (true, _) => {
                let listen = matches!(purpose, Purpose::Serve { .. });
                Backend::Postgres(postgres::Postgres::open(db, listen).await?)
            }
            (false, Purpose::Serve { readers }) => {
                Backend::Sqlite(sqlite::Sqlite::open(Path::new(db), readers)?)
            }
            (false, Purpose::Command) => Backend::Sqlite(sqlite::Sqlite::open(Path::new(db), 1)?),
        };
        Ok(Store {
            backend,
            secrets: None,
        })
    }

    /// The engine's wake-ups: every commit that queues work for it rings this (on
    /// PostgreSQL, other nodes' commits too).
    pub fn waker(&self) -> Waker {
        on_backend!(self, b => b.waker())
    }
}

/// Changes to webhooks that work in the engine's hands must follow (see
/// [`Taker::webhooks_changed`]; edits and rotations, which carry secrets, are in secrets.rs).
impl Store {
    /// Soft delete; its pending deliveries are cancelled.
    pub async fn delete_webhook(&self, account_id: i64, id: i64) -> Result<(), ApiError> {
        on_backend!(self, b => b.delete_webhook(account_id, id).await)?;
        self.webhooks_changed(vec![id]);
        Ok(())
    }

    /// Deletes these webhooks as `deleteWebhook` does, whatever their account.
    pub async fn retire_webhooks(&self, ids: Vec<i64>) -> Result<(), ApiError> {
        on_backend!(self, b => b.retire_webhooks(ids.clone()).await)?;
        self.webhooks_changed(ids);
        Ok(())
    }

    /// After the commit of a change to webhooks `ids`: this node's engine hears of it before
    /// the call that made it is answered, so from then on it sends nothing it read before it.
    /// (On PostgreSQL, the other nodes' engines hear of it through the database: see
    /// `postgres::announce_change`.)
    fn webhooks_changed(&self, ids: Vec<i64>) {
        self.waker().webhooks_changed(Changed::Webhooks(ids));
    }
}

/// Methods that every backend has with the same signature, passed to the backend in use.
macro_rules! delegate {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    on_backend!(self, b => b.$name($($arg),*).await)
                }
            )*
        }
    };
}

// Methods that carry secrets (add_webhook, edit_webhook, webhook, search_webhooks,
// rotate_secret, claim_due) seal and open them on the way: they are in store/secrets.rs.
delegate! {
    /// For `/health`: `Ok` while the database answers and takes writes, else why not.
    fn health(&self) -> Result<(), String>;

    /// Creates a key for `account` (creating the account if needed); returns the key.
    fn add_key(&self, account: &str, access: Access) -> Result<String, ApiError>;
    /// On an empty database: account `default` and a full key for it, returned once.
    fn bootstrap(&self) -> Result<Option<String>, ApiError>;
    fn list_keys(&self) -> Result<Vec<KeyInfo>, ApiError>;
    /// Revokes the one key whose first characters are `prefix`.
    fn revoke_key(&self, prefix: &str) -> Result<(), ApiError>;
    /// Who holds the key with this hash (300 for an unknown or revoked one).
    fn authenticate(&self, hash: &str) -> Result<Caller, ApiError>;

    fn count_webhooks(&self, account_id: i64, criteria: Criteria) -> Result<i64, ApiError>;
    /// Every live webhook's id, object and events, in all accounts.
    fn live_webhook_events(&self) -> Result<Vec<(i64, String, Events)>, ApiError>;

    /// Stores events and fans them out, all or nothing; returns their ids.
    fn add_events(&self, account_id: i64, events: Vec<NewEvent>) -> Result<Vec<i64>, ApiError>;
    /// `testWebhook`: a `ping` event for one webhook; returns its delivery's id.
    fn add_ping(&self, account_id: i64, webhook_id: i64) -> Result<i64, ApiError>;
    fn event(&self, account_id: i64, id: i64) -> Result<EventRecord, ApiError>;
    fn search_events(&self, account_id: i64, criteria: Criteria, limit: i64, offset: i64) -> Result<Vec<EventRecord>, ApiError>;
    fn count_events(&self, account_id: i64, criteria: Criteria) -> Result<i64, ApiError>;

    /// A delivery with its attempts.
    fn delivery(&self, account_id: i64, id: i64) -> Result<DeliveryRecord, ApiError>;
    fn search_deliveries(&self, account_id: i64, criteria: Criteria, limit: i64, offset: i64) -> Result<Vec<DeliveryRecord>, ApiError>;
    fn count_deliveries(&self, account_id: i64, criteria: Criteria) -> Result<i64, ApiError>;
    /// A failed or cancelled delivery is due again now, with a fresh retry schedule.
    fn retry_delivery(&self, account_id: i64, id: i64) -> Result<(), ApiError>;
    /// Failed (and, `with_cancelled`, cancelled) deliveries matching the criteria, of active
    /// webhooks, are due again now; returns how many.
    fn retry_deliveries(&self, account_id: i64, criteria: Criteria, with_cancelled: bool) -> Result<i64, ApiError>;
    /// `getDeliveryStats`: the account's attempts (or one of its webhooks') counted in periods
    /// of `query.span` starting in `from..until`, summed per bucket of `interval` (bucket 0
    /// starts at `from`) and latency class; a (bucket, class) pair without attempts has no cell.
    /// `record_outcome` keeps the counts: per attempt, one row per span for its webhook and one
    /// for its account.
    fn delivery_stats(&self, account_id: i64, query: StatsQuery) -> Result<Vec<StatsCell>, ApiError>;

    /// Records one attempt for every delivery it carried, and what the webhook learnt; the
    /// attempt is added to its webhook's statistics (`delivery_stats`) in the same transaction.
    /// Returns whether it turned the webhook off (a 410, or a circuit open too long). An
    /// outcome tried before is recorded once, even if that try committed unanswered.
    fn record_outcome(&self, outcome: Outcome, circuit: CircuitPolicy) -> Result<bool, ApiError>;
    /// Claimed deliveries that were not sent are due again now.
    fn release(&self, ids: Vec<i64>) -> Result<(), ApiError>;
    /// When the earliest pending delivery due after `after` (epoch ms) falls due.
    fn next_due_ms(&self, after: i64) -> Result<Option<i64>, ApiError>;
    /// For /metrics: pending deliveries, the age of the oldest (s), open circuits.
    fn queue_stats(&self) -> Result<(i64, i64, i64), ApiError>;

    /// Retention: one batch of a pass over events created before `cutoff` (epoch seconds),
    /// starting after event `after` (see store/retention.rs for the rule).
    fn remove_expired(&self, after: i64, cutoff: i64) -> Result<retention::Step, ApiError>;
    /// Retention: webhooks deleted before `cutoff` that nothing refers to any more.
    fn remove_deleted_webhooks(&self, cutoff: i64) -> Result<retention::Removed, ApiError>;
}
