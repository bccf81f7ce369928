//! The retry schedule with ±10 % jitter, and `Retry-After` clamped between the scheduled delay
//! and twice it (API.md §4).

use crate::config::Schedule;
use crate::store::Next;
use rand::Rng;
use std::time::Duration;

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
}
