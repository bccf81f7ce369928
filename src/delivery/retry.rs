//! The retry schedule with ±10 % jitter, and `Retry-After` clamped between the scheduled delay
//! and twice it (API.md §4); and the adaptive limit on requests in flight to one webhook.

use crate::config::Schedule;
use crate::model::Next;
use rand::Rng;
use std::time::{Duration, Instant};

/// What follows a failed attempt, given how many attempts of the current schedule run came
/// before it.
pub fn after_failure(
    schedule: &Schedule,
    attempts_before: i64,
    retry_after: Option<Duration>,
    now_ms: i64,
) -> Next {
    let Some(delay) = usize::try_from(attempts_before)
        .ok()
        .and_then(|i| schedule.0.get(i))
    else {
        return Next::Failed;
    };
    let jittered = delay.mul_f64(rand::thread_rng().gen_range(0.9..=1.1));
    let wait = match retry_after {
        Some(asked) => asked.clamp(*delay, *delay * 2),
        None => jittered,
    };
    Next::RetryAt {
        due_ms: now_ms + wait.as_millis() as i64,
    }
}

/// What an answer says about a receiver's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A 2xx, after this long.
    Clean(Duration),
    /// 429, a 5xx, a timeout or a failed connection: it cannot keep up.
    Overloaded,
    /// Anything else (a 404, say): a fault of the webhook's, not of load.
    Neutral,
}

/// Answers this quick on average never count as slow, whatever the receiver's usual time: a
/// receiver that answers within it is doing fine, and cutting its requests would only cost
/// throughput.
const QUICK_MS: f64 = 10.0;
/// Recent answers slower than this many times the receiver's unqueued time mean requests queue
/// at the receiver.
const SLOW_FACTOR: f64 = 2.0;
/// At most this many requests in flight (the one measured included) and nothing queues at the
/// receiver on our account: such answers measure its own time.
pub const UNQUEUED: usize = 2;

/// How many requests may be in flight to one webhook. It starts low and grows while the
/// receiver answers quickly and cleanly, up to a ceiling; it halves at once on 429, 5xx and
/// timeouts, and shrinks by a quarter when answers slow down (requests queue there). This is
/// TCP's congestion control applied to a receiver: grow by one per answer (doubling each round
/// trip) until the first sign of trouble, by one per round trip after it; cut once per round
/// trip, since every request in flight when trouble starts reports the same trouble.
///
/// "Slow" compares averages, never single answers: the recent answer time against the
/// receiver's time when at most two requests were in flight to it. A receiver whose time
/// varies by itself (a slow path now and then, a fresh connection) is not slow; one whose time
/// grows with what it is sent is. When the limit is cut down to where nothing queues, fresh
/// unqueued answers re-learn the receiver's time, so one that became slower for good is not
/// held to its old best.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    limit: f64,
    ceiling: f64,
    /// Average answer time (ms) of requests sent with at most [`UNQUEUED`] in flight.
    unqueued_ms: Option<f64>,
    /// Average answer time (ms) of the last several answers, however many were in flight.
    recent_ms: Option<f64>,
    /// No trouble seen yet: grow fast.
    probing: bool,
    /// When the limit was last cut: answers to requests sent before then do not cut again.
    last_cut: Option<Instant>,
}

/// An exponentially weighted average: `weight` is the share of the newest sample.
fn average(current: Option<f64>, sample: f64, weight: f64) -> f64 {
    current.map_or(sample, |avg| avg + (sample - avg) * weight)
}

impl AdaptiveLimit {
    pub fn new(initial: usize, ceiling: usize) -> Self {
        let ceiling = ceiling.max(1) as f64;
        AdaptiveLimit {
            limit: (initial.max(1) as f64).min(ceiling),
            ceiling,
            unqueued_ms: None,
            recent_ms: None,
            probing: true,
            last_cut: None,
        }
    }

    /// Requests that may be in flight now.
    pub fn current(&self) -> usize {
        self.limit as usize
    }

    /// Learns from the answer to a request sent at `sent` with `in_flight` requests in flight
    /// to this webhook (itself included).
    pub fn observe(&mut self, sent: Instant, in_flight: usize, signal: Signal) {
        match signal {
            Signal::Neutral => {}
            Signal::Overloaded => self.cut(sent, 0.5),
            Signal::Clean(took) => {
                let ms = took.as_secs_f64() * 1000.0;
                let recent = average(self.recent_ms, ms, 1.0 / 8.0);
                self.recent_ms = Some(recent);
                if in_flight <= UNQUEUED {
                    self.unqueued_ms = Some(average(self.unqueued_ms, ms, 1.0 / 16.0));
                }
                let slow = recent > QUICK_MS
                    && self
                        .unqueued_ms
                        .is_some_and(|usual| recent > usual * SLOW_FACTOR);
                if slow {
                    self.cut(sent, 0.75);
                } else {
                    let step = if self.probing { 1.0 } else { 1.0 / self.limit };
                    self.limit = (self.limit + step).min(self.ceiling);
                }
            }
        }
    }

    fn cut(&mut self, sent: Instant, factor: f64) {
        self.probing = false;
        if self.last_cut.is_some_and(|cut| sent < cut) {
            return;
        }
        self.limit = (self.limit * factor).max(1.0);
        self.last_cut = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule(vec![Duration::from_secs(5), Duration::from_secs(300)])
    }

    #[test]
    fn follows_the_schedule_with_jitter_then_fails() {
        for _ in 0..100 {
            let Next::RetryAt { due_ms } = after_failure(&schedule(), 0, None, 0) else {
                panic!()
            };
            assert!((4500..=5500).contains(&due_ms), "{due_ms}");
        }
        let Next::RetryAt { due_ms } = after_failure(&schedule(), 1, None, 1000) else {
            panic!()
        };
        assert!((270_000 + 1000..=330_000 + 1000).contains(&due_ms));
        assert_eq!(after_failure(&schedule(), 2, None, 0), Next::Failed);
    }

    #[test]
    fn retry_after_is_clamped() {
        let s = schedule();
        assert_eq!(
            after_failure(&s, 0, Some(Duration::from_secs(1)), 0),
            Next::RetryAt { due_ms: 5000 }
        );
        assert_eq!(
            after_failure(&s, 0, Some(Duration::from_secs(7)), 0),
            Next::RetryAt { due_ms: 7000 }
        );
        assert_eq!(
            after_failure(&s, 0, Some(Duration::from_secs(60)), 0),
            Next::RetryAt { due_ms: 10_000 }
        );
    }

    fn ms(n: u64) -> Signal {
        Signal::Clean(Duration::from_millis(n))
    }

    #[test]
    fn the_limit_grows_on_quick_answers_up_to_its_ceiling() {
        let mut limit = AdaptiveLimit::new(4, 64);
        for _ in 0..100 {
            limit.observe(Instant::now(), 8, ms(1));
        }
        assert_eq!(limit.current(), 64);
    }

    #[test]
    fn overload_halves_the_limit_once_per_round_trip() {
        let mut limit = AdaptiveLimit::new(32, 64);
        let sent = Instant::now();
        limit.observe(sent, 32, Signal::Overloaded);
        assert_eq!(limit.current(), 16);
        // The rest of what was in flight with it reports the same trouble.
        limit.observe(sent, 32, Signal::Overloaded);
        assert_eq!(limit.current(), 16);
        limit.observe(Instant::now(), 16, Signal::Overloaded);
        assert_eq!(limit.current(), 8);
        for _ in 0..10 {
            limit.observe(Instant::now(), 1, Signal::Overloaded);
        }
        assert_eq!(limit.current(), 1, "never below one");
    }

    #[test]
    fn answers_that_slow_down_under_load_shrink_the_limit_and_neutral_ones_do_not() {
        let mut limit = AdaptiveLimit::new(16, 64);
        limit.observe(Instant::now(), 1, ms(50));
        limit.observe(Instant::now(), 2, ms(50));
        let before = limit.current();
        limit.observe(Instant::now(), 16, Signal::Neutral);
        assert_eq!(limit.current(), before);
        for _ in 0..3 {
            limit.observe(Instant::now(), 16, ms(400));
        }
        assert!(limit.current() < before, "{} < {before}", limit.current());
    }

    #[test]
    fn a_receiver_whose_time_varies_by_itself_is_not_held_back() {
        // One answer in ten takes 1 ms, the rest 30 ms, however many are in flight.
        let mut limit = AdaptiveLimit::new(4, 64);
        for i in 0..400 {
            let took = if i % 10 == 0 { 1 } else { 30 };
            limit.observe(Instant::now(), if i < 20 { 1 } else { 8 }, ms(took));
        }
        assert_eq!(limit.current(), 64);
    }

    #[test]
    fn after_trouble_it_grows_by_one_per_round_trip() {
        let mut limit = AdaptiveLimit::new(8, 64);
        limit.observe(Instant::now(), 8, Signal::Overloaded);
        assert_eq!(limit.current(), 4);
        // A round trip at a limit of 4 is about four answers.
        for _ in 0..5 {
            limit.observe(Instant::now(), 4, ms(1));
        }
        assert_eq!(limit.current(), 5);
    }
}
