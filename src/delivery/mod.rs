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
use crate::model::{now_ms, now_secs, CircuitPolicy, Claim, Next, Offer, Outcome, Room};
use crate::store::{Changed, Store, Taker, Waker};
use retry::{AdaptiveLimit, Signal};
use sender::{Attempt, Sender};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

/// Most deliveries one claim takes.
const CLAIM_LIMIT: usize = 1000;
/// The longest the engine sleeps without looking at the queue.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// The shortest sleep, so that a queue that cannot be claimed never spins the CPU.
const MIN_IDLE_MS: i64 = 5;

/// Requests in flight to a webhook the engine has not learnt about yet.
const INITIAL_WEBHOOK_LIMIT: usize = 4;
/// How long what was learnt about an idle webhook's receiver is kept.
const FORGET_AFTER: Duration = Duration::from_secs(300);
/// Past twice this many idle webhooks remembered, only this many are kept (those used last):
/// the state of a webhook is about 200 bytes, and without a bound memory followed every
/// webhook sent to in the last [`FORGET_AFTER`] (21 MB of the server's heap in `bench
/// memory`, 100k failing webhooks).
const MOST_IDLE_FLOWS: usize = 10_000;

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
    flows: Mutex<HashMap<i64, Flow>>,
    /// Deliveries claimed and not yet recorded or handed back.
    in_hand: Mutex<HashSet<i64>>,
    /// Room offered to the store for work it is queueing, and not yet taken up (see [`Taker`]).
    promised: AtomicUsize,
    /// The last claim left due work for want of room (the engine's, or a webhook's): a batch
    /// that finishes then wakes the engine.
    room_wanted: AtomicBool,
    /// Batches finished (and room promised given back): what [`note_room_wanted`] looks at.
    room_made: AtomicUsize,
    /// Webhook changes heard so far (see [`Taker::webhooks_changed`]): work is stamped with
    /// the count before it is read, and a webhook's [`Flow::changed`] with the count after.
    changes_heard: AtomicU64,
    /// The count when every webhook was taken as changed ([`Changed::Any`]).
    all_changed: AtomicU64,
    /// Rung when a webhook's failed attempts are all recorded (see [`still_as_read`]).
    failures_settled: Notify,
    stopping: AtomicBool,
    idle: Notify,
}

/// One webhook's traffic: its adaptive limit, and the slots that enforce it.
struct Flow {
    limit: AdaptiveLimit,
    /// Permits = the limit; one is taken for each request in flight.
    slots: Arc<Semaphore>,
    /// Permits in existence (in flight or free); above the limit after a cut, until requests
    /// in flight come back and their permits are retired.
    permits: usize,
    /// Batches claimed for this webhook and not finished.
    batches: usize,
    /// When its last batch finished.
    last_used: Instant,
    /// [`Shared::changes_heard`] when its webhook last changed (0: not since it was known).
    changed: u64,
    /// Failed attempts being recorded (see [`still_as_read`]).
    failures_recording: usize,
}

impl Flow {
    fn new(ceiling: usize) -> Flow {
        let limit = AdaptiveLimit::new(INITIAL_WEBHOOK_LIMIT, ceiling);
        Flow {
            slots: Arc::new(Semaphore::new(limit.current())),
            permits: limit.current(),
            limit,
            batches: 0,
            last_used: Instant::now(),
            changed: 0,
            failures_recording: 0,
        }
    }

    /// Brings the permits to the limit: adds what it grew by, retires free ones it shrank by
    /// (the rest are retired as their requests come back, in [`Flow::give_back`]).
    fn follow_limit(&mut self) {
        let want = self.limit.current();
        if want > self.permits {
            self.slots.add_permits(want - self.permits);
            self.permits = want;
        } else if want < self.permits {
            self.permits -= self.slots.forget_permits(self.permits - want);
        }
    }

    fn give_back(&mut self, permit: OwnedSemaphorePermit) {
        if self.permits > self.limit.current() {
            permit.forget();
            self.permits -= 1;
        }
    }
}

/// Starts the engine on `store`, whose commits that queue work wake it.
pub fn start(store: Store, config: Arc<Config>) -> Result<EngineHandle, reqwest::Error> {
    let shared = Arc::new(Shared {
        sender: Sender::new(&config)?,
        circuit: CircuitPolicy {
            threshold: config.circuit_threshold.max(1),
            probe_interval_ms: config.circuit_probe_interval.as_millis() as i64,
            disable_after_secs: config.disable_after.0.map(|d| d.as_secs() as i64),
        },
        global: Semaphore::new(config.delivery_concurrency.max(1)),
        flows: Mutex::default(),
        in_hand: Mutex::default(),
        promised: AtomicUsize::new(0),
        room_wanted: AtomicBool::new(false),
        room_made: AtomicUsize::new(0),
        changes_heard: AtomicU64::new(0),
        all_changed: AtomicU64::new(0),
        failures_settled: Notify::new(),
        stopping: AtomicBool::new(false),
        idle: Notify::new(),
        waker: store.waker(),
        store,
        config,
    });
    if shared.config.delivery_concurrency > 0 {
        shared
            .waker
            .hand_to(Arc::new(Hand(Arc::downgrade(&shared))));
    }
    let task = tokio::spawn(run(shared.clone()));
    Ok(EngineHandle { shared, task })
}

/// The engine as the store's [`Taker`] (held weakly: the store outlives the engine).
struct Hand(Weak<Shared>);

impl Taker for Hand {
    /// Room for at most one claim's worth, and half the room left after what is held and
    /// promised already: claims (retries, pings, other nodes' work) always find some.
    fn offer(&self) -> Option<Offer> {
        let shared = self.0.upgrade()?;
        let most = CLAIM_LIMIT.min(max_held(&shared).saturating_sub(held(&shared)) / 2);
        if most == 0 {
            return None; // full: not a wake-up per call while it is
        }
        // Promised before `stopping` is read: a shutdown that began meanwhile either is seen
        // here, or waits for the promise (see `EngineHandle::shutdown`).
        shared.promised.fetch_add(most, Ordering::SeqCst);
        if shared.stopping.load(Ordering::SeqCst) {
            give_back(&shared, most);
            return None;
        }
        Some(Offer {
            lease_end: now_ms() + shared.config.lease.as_millis() as i64,
            room: room(&shared),
            most,
            changes_heard: shared.changes_heard.load(Ordering::SeqCst),
        })
    }

    fn give_back(&self, unused: usize) {
        if let Some(shared) = self.0.upgrade() {
            give_back(&shared, unused);
        }
    }

    fn take(&self, offer: Offer, claims: Vec<Claim>) {
        let Some(shared) = self.0.upgrade() else {
            return; // stopped: the leases expire, and the work is claimed again
        };
        let claims = shared.store.open_claims(claims);
        let read = Read {
            lease_end: offer.lease_end,
            changes_heard: offer.changes_heard,
        };
        dispatch(&shared, claims, read);
        give_back(&shared, offer.most);
    }

    fn webhooks_changed(&self, changed: Changed) {
        if let Some(shared) = self.0.upgrade() {
            note_changed(&shared, changed);
        }
    }
}

/// When claimed work was read, as a batch carries it.
#[derive(Clone, Copy)]
struct Read {
    /// Its lease ends (epoch ms).
    lease_end: i64,
    /// [`Shared::changes_heard`] before it was read.
    changes_heard: u64,
}

/// Counts a change heard, and stamps the webhooks it names with the new count (remembering
/// them, if they were not: a claim under way may bring work for them).
fn note_changed(shared: &Shared, changed: Changed) {
    let mut flows = lock(&shared.flows);
    let count = shared.changes_heard.fetch_add(1, Ordering::SeqCst) + 1;
    match changed {
        Changed::Any => shared.all_changed.store(count, Ordering::SeqCst),
        Changed::Webhooks(ids) => {
            for id in ids {
                let flow = flows
                    .entry(id)
                    .or_insert_with(|| Flow::new(shared.config.webhook_concurrency));
                flow.changed = count;
                flow.last_used = Instant::now(); // not forgotten before the claim under way ends
            }
        }
    }
}

/// Counts a failed attempt of the webhook into (`1`) or out of (`-1`) its record.
fn count_failure_recording(shared: &Shared, webhook_id: i64, step: isize) {
    let mut flows = lock(&shared.flows);
    let Some(flow) = flows.get_mut(&webhook_id) else {
        return;
    };
    flow.failures_recording = flow.failures_recording.saturating_add_signed(step);
    if flow.failures_recording == 0 {
        shared.failures_settled.notify_waiters();
    }
}

/// Whether the batch may still be sent as it was read: its webhook has not changed since
/// ([`Read::changes_heard`]). First waits until no failed attempt of the webhook is being
/// recorded: a failure may turn the webhook off (a 410, a circuit open too long), and a batch
/// that took a slot while the record ran (its webhook's or, behind `--delivery-concurrency`,
/// another webhook's) would otherwise go out after the webhook was turned off. A webhook that
/// fails waits for a commit between such batches; one that answers well never waits.
async fn still_as_read(shared: &Shared, webhook_id: i64, read: Read) -> bool {
    loop {
        // Made before the count is read, it hears any ring after that.
        let settled = shared.failures_settled.notified();
        {
            let flows = lock(&shared.flows);
            let flow = flows.get(&webhook_id);
            if flow.is_none_or(|flow| flow.failures_recording == 0) {
                let changed = flow.map_or(0, |flow| flow.changed);
                return changed.max(shared.all_changed.load(Ordering::SeqCst))
                    <= read.changes_heard;
            }
        }
        settled.await;
    }
}

/// Room promised and not used (or now in hand) is free again.
fn give_back(shared: &Shared, promised: usize) {
    shared.promised.fetch_sub(promised, Ordering::SeqCst);
    if lock(&shared.in_hand).is_empty() {
        shared.idle.notify_waiters(); // a shutdown waits for promises too
    }
    note_room_made(shared);
}

/// Most deliveries held in memory at once.
fn max_held(shared: &Shared) -> usize {
    shared.config.delivery_concurrency.max(1) * 100
}

/// Deliveries in hand, and room promised (to the intake, or to a claim under way).
fn held(shared: &Shared) -> usize {
    lock(&shared.in_hand).len() + shared.promised.load(Ordering::SeqCst)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EngineHandle {
    /// Stops claiming, lets attempts in flight finish within the grace period, and hands every
    /// claimed delivery it did not send (or did not hear back about) back to the queue, so the
    /// next start sends it at once instead of after its lease.
    pub async fn shutdown(self) {
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        shared.waker.wake();
        let _ = self.task.await;
        // Batches still waiting for a slot give up at once and hand their work back.
        shared.global.close();
        for flow in lock(&shared.flows).values() {
            flow.slots.close();
        }
        let drained = async {
            loop {
                let idle = shared.idle.notified();
                // Work being handed over (promised) comes into hand, and is handed back too.
                let promised = shared.promised.load(Ordering::SeqCst);
                if lock(&shared.in_hand).is_empty() && promised == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(shared.config.shutdown_grace, drained)
            .await
            .is_err()
        {
            let unsent: Vec<i64> = lock(&shared.in_hand).drain().collect();
            tracing::warn!(
                deliveries = unsent.len(),
                "shutdown grace period over with deliveries in flight; handing them back"
            );
            if let Err(e) = shared.store.release(unsent).await {
                tracing::warn!(error = %e, "could not hand back deliveries; their lease will expire");
            }
        }
    }
}

async fn run(shared: Arc<Shared>) {
    if shared.config.delivery_concurrency == 0 {
        return; // a node that only answers calls: the cluster's other nodes deliver
    }
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        // At capacity, only a finished batch (which then wakes us) can make room. Drained, what
        // is due now is held, or waits for room (a finished batch wakes us, see
        // `note_room_wanted`): sleep until the next retry falls due.
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
            _ = shared.waker.woken() => {}
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
    let max_held = max_held(shared);
    // Claiming into a sliver of room would spread it over many webhooks, one item per request:
    // wait until a good share of a claim fits.
    let min_claim = CLAIM_LIMIT.min(max_held / 2).max(1);
    loop {
        let made = shared.room_made.load(Ordering::SeqCst);
        let held = held(shared);
        if held + min_claim > max_held {
            note_room_wanted(shared, made, true);
            return Fill::AtCapacity;
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return Fill::Drained;
        }
        let limit = CLAIM_LIMIT.min(max_held - held);
        let lease_ms = shared.config.lease.as_millis() as i64;
        // Taken before the claim: its lease ends no later than the one the store gives, and a
        // change heard while it reads is taken to have come before.
        let read = Read {
            lease_end: now_ms() + lease_ms,
            changes_heard: shared.changes_heard.load(Ordering::SeqCst),
        };
        // Promised while the claim is under way, so that offers to the intake meanwhile
        // leave room for what it brings.
        shared.promised.fetch_add(limit, Ordering::SeqCst);
        let claimed = shared
            .store
            .claim_due(limit, room(shared), lease_ms, shared.circuit)
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                shared.promised.fetch_sub(limit, Ordering::SeqCst);
                tracing::error!(error = %e, "claiming deliveries failed");
                return Fill::Drained;
            }
        };
        note_room_wanted(shared, made, claimed.passed_by || claimed.truncated);
        let count: usize = claimed.claims.iter().map(|c| c.deliveries.len()).sum();
        dispatch(shared, claimed.claims, read);
        // Not given back as room made: what the claim took is in hand now.
        shared.promised.fetch_sub(limit, Ordering::SeqCst);
        // Stopped at the most webhooks one claim visits, having taken some: claim on.
        let more = claimed.truncated && count > 0;
        if count < limit && !more {
            return Fill::Drained;
        }
    }
}

/// Notes whether due work was left for want of room (`wanted`), so that the next batch to
/// finish wakes the engine: at once if one finished since `made` was read, before the note
/// could be seen.
fn note_room_wanted(shared: &Shared, made: usize, wanted: bool) {
    shared.room_wanted.store(wanted, Ordering::SeqCst);
    if wanted && shared.room_made.load(Ordering::SeqCst) != made {
        shared.waker.wake();
    }
}

/// A batch finished, or room promised was given back: the engine looks again if the last
/// claim left work for want of room.
fn note_room_made(shared: &Shared) {
    shared.room_made.fetch_add(1, Ordering::SeqCst);
    if shared.room_wanted.load(Ordering::SeqCst) {
        shared.waker.wake();
    }
}

/// Starts a task per batch of leased work.
fn dispatch(shared: &Arc<Shared>, claims: Vec<Claim>, read: Read) {
    for claim in claims {
        lock(&shared.in_hand).extend(claim.deliveries.iter().map(|d| d.id));
        let slots = take_batch(shared, claim.target.webhook_id);
        tokio::spawn(deliver(shared.clone(), claim, slots, read));
    }
}

/// How many more batches each webhook may be given now: claiming more than it may send at
/// once would only make them wait in memory. Webhooks idle for long are forgotten here, so
/// memory follows the webhooks in use.
fn room(shared: &Shared) -> Room {
    let otherwise = INITIAL_WEBHOOK_LIMIT.min(shared.config.webhook_concurrency.max(1));
    let mut flows = lock(&shared.flows);
    forget_idle(&mut flows, Instant::now());
    Room {
        known: flows
            .iter()
            .map(|(id, flow)| (*id, flow.limit.current().saturating_sub(flow.batches)))
            .filter(|(_, room)| *room != otherwise)
            .collect(),
        otherwise,
    }
}

/// Forgets webhooks idle for longer than [`FORGET_AFTER`] and, past twice
/// [`MOST_IDLE_FLOWS`] idle ones, all but the [`MOST_IDLE_FLOWS`] used last. A webhook with
/// batches in flight is always kept. (`now` is given, so that tests need no instant before
/// the machine's boot.)
fn forget_idle(flows: &mut HashMap<i64, Flow>, now: Instant) {
    let mut idle = 0;
    flows.retain(|_, flow| {
        let kept = flow.batches > 0 || now.saturating_duration_since(flow.last_used) < FORGET_AFTER;
        idle += usize::from(kept && flow.batches == 0);
        kept
    });
    // Trimmed only when twice over: the selection, linear in what is remembered, is paid once
    // per MOST_IDLE_FLOWS webhooks newly idle.
    if idle <= 2 * MOST_IDLE_FLOWS {
        return;
    }
    let mut last_used: Vec<Instant> = flows
        .values()
        .filter(|flow| flow.batches == 0)
        .map(|flow| flow.last_used)
        .collect();
    let first_kept = last_used.len() - MOST_IDLE_FLOWS;
    let (_, cutoff, _) = last_used.select_nth_unstable(first_kept);
    let cutoff = *cutoff;
    flows.retain(|_, flow| flow.batches > 0 || flow.last_used >= cutoff);
}

/// Counts a claimed batch against its webhook; returns the webhook's slots.
fn take_batch(shared: &Shared, webhook_id: i64) -> Arc<Semaphore> {
    let mut flows = lock(&shared.flows);
    let flow = flows
        .entry(webhook_id)
        .or_insert_with(|| Flow::new(shared.config.webhook_concurrency));
    flow.batches += 1;
    flow.slots.clone()
}

/// What the limit learns from: when a request was sent, how many were in flight to its
/// webhook then (itself included), and what its answer said.
struct Answer {
    sent: Instant,
    in_flight: usize,
    signal: Signal,
}

/// Requests in flight to a webhook now: the slots taken.
fn in_flight(shared: &Shared, webhook_id: i64) -> usize {
    lock(&shared.flows).get(&webhook_id).map_or(0, |flow| {
        flow.permits.saturating_sub(flow.slots.available_permits())
    })
}

/// A batch is done: its slot goes back (or is retired after a cut) and the limit learns from
/// the answer.
fn finish_batch(
    shared: &Shared,
    webhook_id: i64,
    permit: Option<OwnedSemaphorePermit>,
    answer: Option<Answer>,
) {
    let mut flows = lock(&shared.flows);
    let Some(flow) = flows.get_mut(&webhook_id) else {
        return;
    };
    flow.batches -= 1;
    if let Some(answer) = answer {
        flow.limit
            .observe(answer.sent, answer.in_flight, answer.signal);
        flow.follow_limit();
    }
    if let Some(permit) = permit {
        flow.give_back(permit);
    }
    flow.last_used = Instant::now();
}

/// Claimed deliveries no longer in hand: recorded, or handed back.
fn settle(shared: &Shared, claim: &Claim) {
    let mut in_hand = lock(&shared.in_hand);
    for d in &claim.deliveries {
        in_hand.remove(&d.id);
    }
    if in_hand.is_empty() {
        shared.idle.notify_waiters();
    }
}

async fn release(shared: &Shared, claim: &Claim) {
    let ids: Vec<i64> = claim.deliveries.iter().map(|d| d.id).collect();
    if let Err(e) = shared.store.release(ids).await {
        tracing::warn!(error = %e, "could not hand back unsent deliveries; their lease will expire");
    }
}

/// One batch: wait for a slot (its webhook's, then a global one), send, record. Stopping, or
/// its webhook changed since it was read, it hands the batch back instead.
async fn deliver(shared: Arc<Shared>, claim: Claim, slots: Arc<Semaphore>, read: Read) {
    let (webhook_id, lease_end) = (claim.target.webhook_id, read.lease_end);
    let span = tracing::info_span!("delivery", webhook_id, deliveries = claim.deliveries.len());
    let succeeded = async {
        let slot = slots.acquire_owned().await.ok();
        let global = match &slot {
            Some(_) => shared.global.acquire().await.ok(),
            None => None,
        };
        // A batch whose lease would end before its request surely has (it waited long for a
        // slot) goes back to the queue unsent: past its lease, another claim may take it. (The
        // lease is at least twice the attempt timeout: half of it at least is for the wait.)
        let needed_ms = shared.config.attempt_timeout.as_millis() as i64;
        // A batch read before its webhook changed goes back too: turned off or deleted, its
        // deliveries are cancelled and stay unsent; edited, they are claimed again as it is now
        // (its url, its secrets).
        let sendable = global.is_some()
            && !shared.stopping.load(Ordering::SeqCst)
            && now_ms() + needed_ms < lease_end
            && still_as_read(&shared, webhook_id, read).await;
        let (mut attempt, mut answer) = (None, None);
        if sendable {
            let (sent, in_flight) = (Instant::now(), in_flight(&shared, webhook_id));
            // Boxed, as are the record and the release below: their futures are large (a
            // request, a transaction), and every batch waiting for a slot (thousands, behind a slow
            // receiver) would carry their room all along: 2.4 KB a batch instead of 0.7.
            let sent_attempt = Box::pin(shared.sender.send(&claim)).await;
            answer = Some(Answer {
                sent,
                in_flight,
                signal: sent_attempt.signal(),
            });
            attempt = Some(sent_attempt);
        }
        // A failure may turn the webhook off (a 410, a circuit open too long): until its record
        // says whether it did, the webhook's other batches wait (see `still_as_read`).
        let succeeded = matches!(&attempt, Some(attempt) if attempt.error.is_none());
        let failed = matches!(&attempt, Some(attempt) if attempt.error.is_some());
        if failed {
            count_failure_recording(&shared, webhook_id, 1);
        }
        // The receiver is done with the request: its slots go to the next batch while this one
        // is recorded (a commit is a round trip to the database, and on PostgreSQL a flush of
        // its log). The deliveries stay leased, and in hand, until recorded.
        drop(global);
        finish_batch(&shared, webhook_id, slot, answer);
        let deactivated = match attempt {
            Some(attempt) => Box::pin(record(&shared, &claim, attempt, lease_end)).await,
            // Not sent: hand it back while it is still ours, so that it need not wait for the
            // lease to end (past it, another claim may hold it: leave that one alone).
            None if now_ms() < lease_end => {
                Box::pin(release(&shared, &claim)).await;
                false
            }
            None => false,
        };
        if deactivated {
            note_changed(&shared, Changed::Webhooks(vec![webhook_id])); // before the waiters go
        }
        if failed {
            count_failure_recording(&shared, webhook_id, -1);
        }
        settle(&shared, &claim);
        succeeded
    }
    .instrument(span)
    .await;
    // A failure (a retry to schedule) or work handed back changes when the queue is next due:
    // the engine looks again. A success changes nothing a claim would find (one that closes a
    // circuit is recorded as queueing its waiting work), unless work waits for room.
    if !succeeded {
        shared.waker.wake();
    }
    note_room_made(&shared);
}

/// Records the attempt; returns whether that turned the webhook off.
async fn record(shared: &Shared, claim: &Claim, attempt: Attempt, lease_end: i64) -> bool {
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
        url: claim.target.url.clone(),
        next,
        time: now_secs(),
        duration_ms: attempt.duration.as_millis() as i64,
        status_code: attempt.status,
        error: attempt.error,
        response_body: attempt.response_body,
        deactivate: attempt.gone,
        activation: claim.target.activation,
        key: rand::random(),
        tried_before: false,
    };
    store_outcome(shared, outcome, lease_end).await
}

/// A write can fail for a while (another process holding the database lock, say): keep the
/// outcome and try again while the lease holds, so the attempt's record is not lost. Past the
/// lease the work is claimed again anyway: at-least-once holds either way. A try that failed
/// may have committed all the same (its answer lost with the connection): the store makes
/// sure the next try does not record the attempt twice.
async fn store_outcome(shared: &Shared, mut outcome: Outcome, lease_end: i64) -> bool {
    let mut pause = Duration::from_millis(50);
    loop {
        let e = match shared
            .store
            .record_outcome(outcome.clone(), shared.circuit)
            .await
        {
            Ok(deactivated) => return deactivated,
            Err(e) => e,
        };
        if now_ms() + pause.as_millis() as i64 >= lease_end {
            tracing::error!(error = %e, "recording an attempt failed; the lease will expire");
            return false;
        }
        tracing::warn!(error = %e, "recording an attempt failed; trying again");
        outcome.tried_before = true;
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_webhooks_beyond_the_bound_are_forgotten_longest_idle_first() {
        // A minute from now, so that a minute before it is never before the machine's boot.
        let now = Instant::now() + Duration::from_secs(60);
        let flow = |idle_ms: u64, batches: usize| Flow {
            last_used: now - Duration::from_millis(idle_ms),
            batches,
            ..Flow::new(8)
        };
        let idle = 2 * MOST_IDLE_FLOWS + 1;
        // Webhook n has been idle n ms; webhooks beyond `idle` are the longest idle of all, but
        // have batches in flight.
        let mut flows: HashMap<i64, Flow> = (0..idle as i64)
            .map(|n| (n, flow(n as u64, 0)))
            .chain((0..3).map(|n| (idle as i64 + n, flow(60_000, 1))))
            .collect();
        forget_idle(&mut flows, now);
        assert_eq!(flows.len(), MOST_IDLE_FLOWS + 3);
        assert!((0..MOST_IDLE_FLOWS as i64).all(|n| flows.contains_key(&n)));
        assert!((0..3).all(|n| flows.contains_key(&(idle as i64 + n))));
    }

    #[test]
    fn up_to_twice_the_bound_idle_webhooks_are_all_kept() {
        let mut flows: HashMap<i64, Flow> = (0..2 * MOST_IDLE_FLOWS as i64)
            .map(|n| (n, Flow::new(8)))
            .collect();
        forget_idle(&mut flows, Instant::now());
        assert_eq!(flows.len(), 2 * MOST_IDLE_FLOWS);
    }

    #[test]
    fn within_the_bound_only_time_forgets() {
        // Seen from FORGET_AFTER ahead, every webhook was last used that long ago; all but 7
        // are used again then.
        let mut flows: HashMap<i64, Flow> = (0..100).map(|n| (n, Flow::new(8))).collect();
        let now = Instant::now() + FORGET_AFTER;
        for (id, flow) in flows.iter_mut() {
            if *id != 7 {
                flow.last_used = now;
            }
        }
        forget_idle(&mut flows, now);
        assert_eq!(flows.len(), 99);
        assert!(!flows.contains_key(&7));
    }
}
