//! The delivery engine. Woken after each commit that creates work and by a timer for the next
//! due retry, it claims due deliveries (with a lease), sends each webhook's share as one batch,
//! and records what happened. Everything it holds in memory can be rebuilt from the database:
//! a crash only leaves leases that expire.

pub mod guard;
pub mod retry;
pub mod sender;
pub mod signing;

use crate::config::Config;
use crate::metrics;
use crate::model::{now_ms, now_secs};
use crate::store::{CircuitPolicy, Claim, Next, Outcome, Store};
use sender::{Attempt, Sender};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;

/// Most deliveries one claim takes.
const CLAIM_LIMIT: usize = 1000;
/// The longest the engine sleeps without looking at the queue.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// The shortest sleep, so that a queue that cannot be claimed never spins the CPU.
const MIN_IDLE_MS: i64 = 5;

/// Wakes the engine: new work was committed.
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// A running engine; [`EngineHandle::shutdown`] stops it gracefully.
pub struct EngineHandle {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    store: Store,
    config: Arc<Config>,
    sender: Sender,
    waker: Waker,
    circuit: CircuitPolicy,
    global: Semaphore,
    per_webhook: Mutex<HashMap<i64, Arc<Semaphore>>>,
    /// Deliveries claimed and not yet recorded.
    held: AtomicUsize,
    stopping: AtomicBool,
    idle: Notify,
}

pub fn start(
    store: Store,
    config: Arc<Config>,
    waker: Waker,
) -> Result<EngineHandle, reqwest::Error> {
    let shared = Arc::new(Shared {
        sender: Sender::new(&config)?,
        circuit: CircuitPolicy {
            threshold: config.circuit_threshold.max(1),
            probe_interval_ms: config.circuit_probe_interval.as_millis() as i64,
        },
        global: Semaphore::new(config.delivery_concurrency.max(1)),
        per_webhook: Mutex::default(),
        held: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        idle: Notify::new(),
        store,
        config,
        waker,
    });
    let task = tokio::spawn(run(shared.clone()));
    Ok(EngineHandle { shared, task })
}

impl EngineHandle {
    /// Stops claiming, lets in-flight attempts finish within the grace period, and hands
    /// claimed-but-unsent work back to the queue.
    pub async fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.waker.wake();
        let _ = self.task.await;
        let grace = self.shared.config.shutdown_grace;
        let drained = async {
            while self.shared.held.load(Ordering::SeqCst) > 0 {
                self.shared.idle.notified().await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(
                "shutdown grace period over with deliveries in flight; they will be retried"
            );
        }
    }
}

async fn run(shared: Arc<Shared>) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        // At capacity, only a finished batch (which wakes us) can make room. Drained, what is
        // due now is held or waits for a busy webhook's batch to finish (which wakes us too):
        // sleep until the next retry falls due.
        let sleep = match fill(&shared).await {
            Fill::AtCapacity => MAX_IDLE,
            Fill::Drained => match shared.store.next_due_ms(now_ms()).await {
                Ok(Some(due)) => Duration::from_millis(
                    (due - now_ms()).clamp(MIN_IDLE_MS, MAX_IDLE.as_millis() as i64) as u64,
                ),
                _ => MAX_IDLE,
            },
        };
        tokio::select! {
            _ = shared.waker.0.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

enum Fill {
    /// Nothing more is due that can be sent now (or claiming failed).
    Drained,
    /// As many deliveries are held in memory as allowed.
    AtCapacity,
}

/// Claims while there is room in memory, and starts a task per batch.
async fn fill(shared: &Arc<Shared>) -> Fill {
    let max_held = shared.config.delivery_concurrency.max(1) * 100;
    // Claiming into a sliver of room would spread it over many webhooks, one item per request:
    // wait until a good share of a claim fits.
    let min_claim = CLAIM_LIMIT.min(max_held / 2).max(1);
    loop {
        let held = shared.held.load(Ordering::SeqCst);
        if held + min_claim > max_held {
            return Fill::AtCapacity;
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return Fill::Drained;
        }
        let limit = CLAIM_LIMIT.min(max_held - held);
        let lease_ms = shared.config.lease.as_millis() as i64;
        let claims = match shared
            .store
            .claim_due(
                limit,
                shared.config.webhook_concurrency,
                busy_webhooks(shared),
                lease_ms,
                shared.circuit,
            )
            .await
        {
            Ok(claims) => claims,
            Err(e) => {
                tracing::error!(error = %e, "claiming deliveries failed");
                return Fill::Drained;
            }
        };
        let claimed: usize = claims.iter().map(|c| c.deliveries.len()).sum();
        for claim in claims {
            shared
                .held
                .fetch_add(claim.deliveries.len(), Ordering::SeqCst);
            let lease_end = now_ms() + lease_ms;
            let slots = webhook_slots(shared, claim.target.webhook_id);
            tokio::spawn(deliver(shared.clone(), claim, slots, lease_end));
        }
        if claimed < limit {
            return Fill::Drained;
        }
    }
}

/// Webhooks that already hold as many batches as they may send at once: claiming more for
/// them now would only make it wait in memory. (Each held batch keeps a handle on its
/// webhook's slots; the map keeps one more.)
fn busy_webhooks(shared: &Shared) -> HashSet<i64> {
    let map = shared.per_webhook.lock().unwrap_or_else(|p| p.into_inner());
    let concurrency = shared.config.webhook_concurrency.max(1);
    map.iter()
        .filter(|(_, slots)| Arc::strong_count(slots) > concurrency)
        .map(|(id, _)| *id)
        .collect()
}

fn webhook_slots(shared: &Shared, webhook_id: i64) -> Arc<Semaphore> {
    let mut map = shared.per_webhook.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(webhook_id)
        .or_insert_with(|| Arc::new(Semaphore::new(shared.config.webhook_concurrency.max(1))))
        .clone()
}

/// Drops a webhook's slots once nobody uses them, so memory follows the busy webhooks only.
fn forget_idle_slots(shared: &Shared, webhook_id: i64, slots: Arc<Semaphore>) {
    let mut map = shared.per_webhook.lock().unwrap_or_else(|p| p.into_inner());
    // One reference in the map, one here: nobody else is waiting on or holding them.
    if Arc::strong_count(&slots) == 2 {
        map.remove(&webhook_id);
    }
}

async fn release(shared: &Shared, claim: &Claim) {
    let ids: Vec<i64> = claim.deliveries.iter().map(|d| d.id).collect();
    if let Err(e) = shared.store.release(ids).await {
        tracing::warn!(error = %e, "could not hand back unsent deliveries; their lease will expire");
    }
}

/// One batch: wait for a slot, send, record.
async fn deliver(shared: Arc<Shared>, claim: Claim, slots: Arc<Semaphore>, lease_end: i64) {
    let count = claim.deliveries.len();
    let span = tracing::info_span!(
        "delivery",
        webhook_id = claim.target.webhook_id,
        deliveries = count
    );
    async {
        {
            let _webhook = slots.acquire().await;
            let _global = shared.global.acquire().await;
            if shared.stopping.load(Ordering::SeqCst) {
                // Not sent: hand it back so the next start need not wait for the lease.
                release(&shared, &claim).await;
            } else if now_ms() < lease_end {
                // Past its lease, a claim may have been taken again: leave it to that claim.
                let attempt = shared.sender.send(&claim).await;
                record(&shared, &claim, attempt, lease_end).await;
            }
        }
        forget_idle_slots(&shared, claim.target.webhook_id, slots);
    }
    .instrument(span)
    .await;
    if shared.held.fetch_sub(count, Ordering::SeqCst) == count {
        shared.idle.notify_waiters();
    }
    shared.waker.wake();
}

async fn record(shared: &Shared, claim: &Claim, attempt: Attempt, lease_end: i64) {
    let now = now_ms();
    let next = claim
        .deliveries
        .iter()
        .map(|d| {
            let next = match (&attempt.error, attempt.gone) {
                (None, _) => Next::Succeeded,
                (Some(_), true) => Next::Failed,
                (Some(_), false) => retry::after_failure(
                    &shared.config.retry_schedule,
                    d.attempts_in_schedule,
                    attempt.retry_after,
                    now,
                ),
            };
            (d.id, next)
        })
        .collect();
    let label = match &attempt.error {
        None => "succeeded",
        Some(_) => "failed",
    };
    metrics::record_attempt(label, claim.deliveries.len(), attempt.duration);
    tracing::info!(
        status = attempt.status,
        error = attempt.error.as_deref(),
        duration_ms = attempt.duration.as_millis() as u64,
        "attempt"
    );
    let outcome = Outcome {
        webhook_id: claim.target.webhook_id,
        next,
        time: now_secs(),
        duration_ms: attempt.duration.as_millis() as i64,
        status_code: attempt.status,
        error: attempt.error,
        response_body: attempt.response_body,
        deactivate: attempt.gone,
    };
    store_outcome(shared, outcome, lease_end).await;
}

/// A write can fail for a while (another process holding the database lock, say): keep the
/// outcome and try again while the lease holds, so the attempt's record is not lost. Past the
/// lease the work is claimed again anyway: at-least-once holds either way.
async fn store_outcome(shared: &Shared, outcome: Outcome, lease_end: i64) {
    let mut pause = Duration::from_millis(50);
    loop {
        let Err(e) = shared
            .store
            .record_outcome(outcome.clone(), shared.circuit)
            .await
        else {
            return;
        };
        if now_ms() + pause.as_millis() as i64 >= lease_end {
            tracing::error!(error = %e, "recording an attempt failed; the lease will expire");
            return;
        }
        tracing::warn!(error = %e, "recording an attempt failed; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
