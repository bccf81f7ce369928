//! Operational events: hookrpc tells an account about its own webhooks through ordinary events
//! of that account (objects `webhook` and `delivery`, in every catalog), which any of its
//! webhooks may follow. Each backend's queue publishes them in the transaction that records the
//! change they tell of, so an event is published exactly when its change commits; this module
//! says what each one holds.

use crate::model::{JsonObject, NewEvent, Outcome};
use rules::WebhookNow;
use serde_json::{json, Value};

use super::rules;

/// Whether events of `object` are hookrpc's own: a delivery of one that fails is not told
/// about (that would cascade).
pub(crate) fn is_operational(object: &str) -> bool {
    crate::catalog::is_reserved(object)
}

fn event(object: &str, event: &str, data: Value) -> NewEvent {
    let Value::Object(data) = data else {
        unreachable!("operational event data is always an object")
    };
    let data = JsonObject::of(&data);
    NewEvent {
        object: object.into(),
        event: event.into(),
        list_id: 0,
        contact_id: None,
        data,
        idempotency_key: None,
    }
}

/// `webhook.circuit_opened` by a failure with `error` (counted in: `w` is the webhook before it).
pub(crate) fn circuit_opened(webhook_id: i64, w: &WebhookNow, error: &str) -> NewEvent {
    let data = json!({
        "webhook_id": webhook_id,
        "url": w.url,
        "consecutive_failures": w.consecutive_failures + 1,
        "last_error": error,
    });
    event("webhook", "circuit_opened", data)
}

/// `webhook.circuit_closed`: a probe succeeded.
pub(crate) fn circuit_closed(webhook_id: i64, w: &WebhookNow) -> NewEvent {
    event(
        "webhook",
        "circuit_closed",
        json!({"webhook_id": webhook_id, "url": w.url}),
    )
}

/// `webhook.deactivated`: 410 Gone, or a circuit open for longer than `--disable-after`.
pub(crate) fn deactivated(webhook_id: i64, w: &WebhookNow, reason: &str) -> NewEvent {
    let data = json!({"webhook_id": webhook_id, "url": w.url, "reason": reason});
    event("webhook", "deactivated", data)
}

/// A delivery that an attempt left `failed`: what `delivery.failed` tells of it.
pub(crate) struct FailedDelivery {
    pub delivery_id: i64,
    pub event_id: i64,
    /// The object of its event: none is told about a delivery of an operational event.
    pub object: String,
}

/// `delivery.failed`: an attempt with `error` left the delivery failed.
fn delivery_failed(webhook_id: i64, d: &FailedDelivery, error: &str) -> NewEvent {
    let data = json!({
        "delivery_id": d.delivery_id,
        "webhook_id": webhook_id,
        "event_id": d.event_id,
        "last_error": error,
    });
    event("delivery", "failed", data)
}

/// What an outcome tells the account: `delivery.failed` for each delivery it left failed (its
/// last retry used, or the receiver answered 410) but those of operational events, then what
/// became of the webhook (`after` a failure from its current url; `closed` when a success
/// closed its circuit).
pub(crate) fn told(
    o: &Outcome,
    w: &WebhookNow,
    failed: &[FailedDelivery],
    after: Option<&rules::AfterFailure>,
    closed: bool,
) -> Vec<NewEvent> {
    let (webhook_id, error) = (o.webhook_id, o.error.as_deref().unwrap_or_default());
    let mut events: Vec<NewEvent> = failed
        .iter()
        .filter(|d| !is_operational(&d.object))
        .map(|d| delivery_failed(webhook_id, d, error))
        .collect();
    match after {
        Some(rules::AfterFailure::Open { newly: true }) => {
            events.push(circuit_opened(webhook_id, w, error))
        }
        Some(rules::AfterFailure::Deactivate { reason }) => {
            events.push(deactivated(webhook_id, w, reason))
        }
        _ => {}
    }
    if closed {
        events.push(circuit_closed(webhook_id, w));
    }
    events
}
