//! The queue's rules that are the same whatever the backend: how much of one webhook's due
//! work a claim takes, what an attempt's outcome makes of each delivery it carried and of its
//! webhook, and how a failure is described. Each backend's `queue.rs` (claims) and `record.rs`
//! (outcomes) apply them with its own SQL.

use crate::model::{latency_class, AttemptTally, CircuitPolicy, Next, Outcome, WebhookSettings};
use std::time::Duration;

/// Whether an edit changes the requests a webhook is sent, or whether it is sent any: work read
/// before such an edit must not go out as read (see `store::Taker::webhooks_changed`). A name,
/// description, metadata, events or batch size changed alone leaves work already read as it
/// is: handing it back would only put it at the end of the line.
pub(crate) fn changes_requests(old: &WebhookSettings, new: &WebhookSettings) -> bool {
    old.url != new.url
        || old.headers != new.headers
        || old.auth != new.auth
        || old.secret != new.secret
        || old.is_active != new.is_active
}

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
fn settle(next: &Next, moved: bool, deactivate: bool, now_ms: i64) -> (&'static str, Option<i64>) {
    match next {
        Next::Succeeded => ("succeeded", None),
        Next::RetryAt { due_ms } => ("pending", Some(*due_ms)),
        Next::Failed if moved && deactivate => ("pending", Some(now_ms)),
        Next::Failed => ("failed", None),
    }
}

/// A webhook as an attempt's outcome finds it (read in the transaction that records it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebhookNow {
    pub account_id: i64,
    pub url: String,
    /// Active and not deleted.
    pub is_active: bool,
    pub consecutive_failures: i64,
    pub circuit_open: bool,
    /// When its circuit opened (epoch seconds), while it is open.
    pub circuit_opened_time: Option<i64>,
    /// How many times an edit turned it on again.
    pub activation: i64,
}

/// Whether an answer says something about its webhook as it is now: its request went to the
/// webhook's current url, and the webhook is live and active and was not turned on again
/// since the request's delivery was claimed (the count of reactivations is the one the claim
/// read: no clocks of two nodes are compared). Other answers settle their deliveries, but leave the webhook's
/// own record (circuit, failures, last error and success, activity) alone: a late `410` from
/// an old url, or from before a reactivation, must not stop the webhook as it is now.
pub(crate) fn speaks_for(was: &WebhookNow, o: &Outcome) -> bool {
    was.url == o.url && was.is_active && was.activation == o.activation
}

/// What a failed attempt from the webhook's current url makes of the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Fewer consecutive failures than the threshold: the circuit stays closed.
    Closed,
    /// The circuit opens (`newly`: it was closed) or stays open; due work waits for the next
    /// probe.
    Open { newly: bool },
    /// 410 Gone, or a circuit open longer than `--disable-after`: the webhook becomes inactive
    /// and its pending work is cancelled. `reason` says why, in words.
    Deactivate { reason: String },
}

/// What recording an outcome did besides settling its deliveries.
pub(crate) struct Recorded {
    /// It queued deliveries (a circuit closed, operational events published).
    pub queued: bool,
    /// It turned the webhook off ([`AfterFailure::Deactivate`]).
    pub deactivated: bool,
}

impl Recorded {
    pub fn of(after: Option<&AfterFailure>, queued: bool) -> Recorded {
        Recorded {
            queued,
            deactivated: matches!(after, Some(AfterFailure::Deactivate { .. })),
        }
    }
}

pub(crate) fn after_failure(
    was: &WebhookNow,
    gone: bool,
    policy: CircuitPolicy,
    now_secs: i64,
) -> AfterFailure {
    if gone {
        return AfterFailure::Deactivate {
            reason: "the receiver asked to stop (410 Gone)".into(),
        };
    }
    let opened = was.circuit_opened_time.filter(|_| was.circuit_open);
    if let (Some(opened), Some(limit)) = (opened, policy.disable_after_secs) {
        if now_secs - opened >= limit {
            let limit = humantime::format_duration(Duration::from_secs(limit as u64));
            return AfterFailure::Deactivate {
                reason: format!("its circuit stayed open for more than {limit}"),
            };
        }
    }
    match was.consecutive_failures + 1 >= policy.threshold {
        true => AfterFailure::Open {
            newly: !was.circuit_open,
        },
        false => AfterFailure::Closed,
    }
}

/// What an attempt makes of the deliveries it carried, in the order carried.
pub(crate) struct Settled {
    pub ids: Vec<i64>,
    /// Each one's status and due time after the attempt (see [`settle`]).
    pub statuses: Vec<&'static str>,
    pub dues: Vec<Option<i64>>,
    /// The attempt's statistics, its deliveries counted in.
    pub tally: AttemptTally,
}

impl Settled {
    pub fn of(o: &Outcome, moved: bool, now_ms: i64) -> Settled {
        let mut settled = Settled {
            ids: Vec::with_capacity(o.next.len()),
            statuses: Vec::with_capacity(o.next.len()),
            dues: Vec::with_capacity(o.next.len()),
            tally: attempt_tally(o),
        };
        for (id, next) in &o.next {
            let (status, due) = settle(next, moved, o.deactivate, now_ms);
            tally(&mut settled.tally, status);
            settled.ids.push(*id);
            settled.statuses.push(status);
            settled.dues.push(due);
        }
        settled
    }

    /// The deliveries it makes failed (if they are still pending).
    pub fn failing(&self) -> Vec<i64> {
        let failing = self.ids.iter().zip(&self.statuses);
        failing
            .filter(|(_, status)| **status == "failed")
            .map(|(id, _)| *id)
            .collect()
    }
}

/// What a failure from the webhook's current url writes to the webhook's row, and what it did.
pub(crate) struct Failure {
    pub after: AfterFailure,
    /// Its `last_error_message`.
    pub message: String,
    pub deactivate: bool,
    /// The circuit opens or stays open: its due work waits until this next probe (epoch ms).
    pub probe_ms: Option<i64>,
}

impl Failure {
    pub fn of(was: &WebhookNow, o: &Outcome, error: &str, policy: CircuitPolicy) -> Failure {
        let after = after_failure(was, o.deactivate, policy, o.time);
        let probe_ms = matches!(after, AfterFailure::Open { .. })
            .then(|| crate::model::now_ms() + policy.probe_interval_ms);
        Failure {
            message: failure_message(error, &after),
            deactivate: matches!(after, AfterFailure::Deactivate { .. }),
            probe_ms,
            after,
        }
    }
}

/// The webhook's `last_error_message` after a failed attempt.
fn failure_message(error: &str, after: &AfterFailure) -> String {
    match after {
        AfterFailure::Deactivate { reason } => format!("{error}: {reason}, webhook deactivated"),
        _ => error.to_owned(),
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
fn attempt_tally(o: &Outcome) -> AttemptTally {
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
fn tally(tally: &mut AttemptTally, status: &str) {
    match status {
        "succeeded" => tally.succeeded += 1,
        "pending" => tally.retried += 1,
        _ => tally.failed += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: CircuitPolicy = CircuitPolicy {
        threshold: 3,
        probe_interval_ms: 60_000,
        disable_after_secs: Some(100),
    };

    fn webhook(failures: i64, opened: Option<i64>) -> WebhookNow {
        WebhookNow {
            account_id: 1,
            url: "http://x/".into(),
            is_active: true,
            consecutive_failures: failures,
            circuit_open: opened.is_some(),
            circuit_opened_time: opened,
            activation: 0,
        }
    }

    #[test]
    fn failures_open_the_circuit_at_the_threshold_once() {
        let at = |w: &WebhookNow| after_failure(w, false, POLICY, 1000);
        assert_eq!(at(&webhook(1, None)), AfterFailure::Closed);
        assert_eq!(at(&webhook(2, None)), AfterFailure::Open { newly: true });
        assert_eq!(
            at(&webhook(3, Some(950))),
            AfterFailure::Open { newly: false }
        );
    }

    #[test]
    fn gone_or_a_circuit_open_too_long_deactivates() {
        let gone = after_failure(&webhook(0, None), true, POLICY, 1000);
        assert!(matches!(gone, AfterFailure::Deactivate { .. }));
        let long = after_failure(&webhook(9, Some(900)), false, POLICY, 1000);
        let AfterFailure::Deactivate { reason } = long else {
            panic!("{long:?}");
        };
        assert_eq!(reason, "its circuit stayed open for more than 1m 40s");
        let never = CircuitPolicy {
            disable_after_secs: None,
            ..POLICY
        };
        let kept = after_failure(&webhook(9, Some(0)), false, never, 1000);
        assert_eq!(kept, AfterFailure::Open { newly: false });
    }

    #[test]
    fn an_answer_speaks_for_the_webhook_only_as_it_was_when_sent() {
        let outcome = |url: &str, activation: i64| Outcome {
            webhook_id: 1,
            url: url.into(),
            next: Vec::new(),
            time: 1,
            duration_ms: 1,
            status_code: Some(410),
            error: Some("HTTP 410".into()),
            response_body: None,
            deactivate: true,
            activation,
            key: 1,
            tried_before: false,
        };
        let now = webhook(0, None);
        assert!(speaks_for(&now, &outcome("http://x/", 0)));
        assert!(!speaks_for(&now, &outcome("http://old/", 0)), "moved");
        let off = WebhookNow {
            is_active: false,
            ..webhook(0, None)
        };
        assert!(!speaks_for(&off, &outcome("http://x/", 0)), "inactive");
        let turned_on = WebhookNow {
            activation: 1,
            ..webhook(0, None)
        };
        assert!(
            !speaks_for(&turned_on, &outcome("http://x/", 0)),
            "claimed before"
        );
        assert!(speaks_for(&turned_on, &outcome("http://x/", 1)));
    }
}
