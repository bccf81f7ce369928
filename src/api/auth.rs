//! The gate every call passes: api_key → (account, access level), and the per-key concurrency
//! limit (399) that keeps one key from taking every worker.
//!
//! A key's account and access level are remembered for [`KEY_CACHE_TTL`], because looking them
//! up costs a database read transaction on every call, more than many methods' own work. Keys
//! change in another process (`hookrpc key revoke`), which waits out that period before it
//! returns: once it has returned, the key is refused everywhere.

use crate::error::ApiError;
use crate::model::Caller;
use crate::store::{hash_key, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a successful key lookup is trusted.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// What the gate knows of one key: the lookup it may reuse, and the calls it has in flight.
/// Unknown keys are never remembered once their calls end. (Keys are held as given: hashing
/// each call's key would cost more than the rest of the gate.)
#[derive(Default)]
struct KeyState {
    known: Option<(Caller, Instant)>,
    in_flight: usize,
}

pub struct Gate {
    limit: usize,
    keys: Arc<Mutex<HashMap<String, KeyState>>>,
}

/// Held for the length of a call; frees the key's slot when dropped.
pub struct Permit {
    key: String,
    keys: Arc<Mutex<HashMap<String, KeyState>>>,
}

impl Gate {
    /// `limit`: most calls one key may have in flight.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            keys: Arc::default(),
        }
    }

    /// Takes one of the key's slots (399 when none is free), then says who is calling (300
    /// for a missing, unknown or revoked key).
    pub async fn admit(&self, store: &Store, key: &str) -> Result<(Caller, Permit), ApiError> {
        let known = {
            let mut keys = lock(&self.keys);
            let state = keys.entry(key.to_owned()).or_default();
            if state.in_flight >= self.limit {
                return Err(ApiError::TooManyConcurrent { limit: self.limit });
            }
            state.in_flight += 1;
            state
                .known
                .filter(|(_, since)| since.elapsed() < KEY_CACHE_TTL)
        };
        let permit = Permit {
            key: key.to_owned(),
            keys: self.keys.clone(),
        };
        let caller = match known {
            Some((caller, _)) => caller,
            None => {
                let found = store.authenticate(&hash_key(key)).await;
                if let Some(state) = lock(&self.keys).get_mut(key) {
                    // A key that stopped working is forgotten, like one never seen.
                    state.known = found.as_ref().ok().map(|caller| (*caller, Instant::now()));
                }
                found?
            }
        };
        Ok((caller, permit))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut keys = lock(&self.keys);
        if let Some(state) = keys.get_mut(&self.key) {
            state.in_flight -= 1;
            if state.in_flight == 0 && state.known.is_none() {
                keys.remove(&self.key);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
