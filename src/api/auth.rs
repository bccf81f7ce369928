//! The per-key concurrency limit (399). Authentication itself is a store lookup of the key's
//! hash; this guards the server from one key taking every worker.

use crate::error::ApiError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct KeyLimiter {
    limit: usize,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

/// Held for the length of a call; frees the key's slot when dropped.
pub struct Permit {
    key: String,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl KeyLimiter {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            in_flight: Arc::default(),
        }
    }

    pub fn acquire(&self, key: &str) -> Result<Permit, ApiError> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(key.to_owned()).or_insert(0);
        if *count >= self.limit {
            return Err(ApiError::TooManyConcurrent { limit: self.limit });
        }
        *count += 1;
        Ok(Permit {
            key: key.to_owned(),
            in_flight: self.in_flight.clone(),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}
