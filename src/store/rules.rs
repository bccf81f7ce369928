//! The queue's rules that are the same whatever the backend: how much of one webhook's due
//! work a claim takes, what an attempt's outcome makes of each delivery it carried, and how a
//! failure is described. Each backend's `queue.rs` applies them with its own SQL.

use crate::model::{latency_class, AttemptTally, Next, Outcome};

/// What a claim takes of one webhook's due work.
pub(crate) struct Share {
    /// How many deliveries (oldest first).
    pub count: usize,
    /// For an open circuit: whether a probe is due (the batch going out now is the probe).
    /// `None` for a closed circuit.
    pub probe_due: Option<bool>,
}

/// A webhook with room for `fits` batches of `batch_size`, in a claim that may take
/// `room_left` more deliveries: a closed circuit gets its whole share; an open one sends one
/// batch, as its probe, when a probe is due, and nothing otherwise.
pub(crate) fn share(
    batch_size: usize,
    fits: usize,
    room_left: usize,
    circuit: (bool, Option<i64>),
    now_ms: i64,
) -> Share {
    let whole = (batch_size * fits).min(room_left);
    let (open, next_probe_ms) = circuit;
    let probe_due = open.then(|| next_probe_ms.unwrap_or(0) <= now_ms);
    let count = match probe_due {
        None => whole,
        Some(true) => batch_size.min(whole),
        Some(false) => 0,
    };
    Share { count, probe_due }
}

/// A delivery's status and due time after an attempt. `moved`: the webhook's url changed while
/// the request was out, so a "stop" (410) from the old url fails nothing: the delivery is due
/// again at once, at the new url.
pub(crate) fn settle(
    next: &Next,
    moved: bool,
    deactivate: bool,
    now_ms: i64,
) -> (&'static str, Option<i64>) {
    match next {
        Next::Succeeded => ("succeeded", None),
        Next::RetryAt { due_ms } => ("pending", Some(*due_ms)),
        Next::Failed if moved && deactivate => ("pending", Some(now_ms)),
        Next::Failed => ("failed", None),
    }
}

/// The webhook's `last_error_message` after a failed attempt.
pub(crate) fn failure_message(error: &str, deactivate: bool) -> String {
    match deactivate {
        true => format!("{error}: the receiver asked to stop, webhook deactivated"),
        false => error.to_owned(),
    }
}

/// The delivery statuses `retryDeliveries` queues again, as an SQL list.
pub(crate) fn retried_statuses(with_cancelled: bool) -> &'static str {
    match with_cancelled {
        true => "'failed', 'cancelled'",
        false => "'failed'",
    }
}

/// An attempt's statistics, before its deliveries are counted in with [`tally`].
pub(crate) fn attempt_tally(o: &Outcome) -> AttemptTally {
    AttemptTally {
        time: o.time,
        latency_class: latency_class(o.duration_ms),
        succeeded: 0,
        retried: 0,
        failed: 0,
    }
}

/// Counts a delivery the attempt carried by its status after it (as [`settle`] gave it):
/// due again is a retry.
pub(crate) fn tally(tally: &mut AttemptTally, status: &str) {
    match status {
        "succeeded" => tally.succeeded += 1,
        "pending" => tally.retried += 1,
        _ => tally.failed += 1,
    }
}
