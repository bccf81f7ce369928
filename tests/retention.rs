//! Retention (`--retention`): events whose deliveries are all final are removed with their
//! deliveries and attempts once the last became final longer ago than the retention, and so
//! are webhooks deleted that long ago; pending work stays; calls and delivery go on meanwhile.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn metric(server: &Server, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn add_event(server: &Server, event: &str) -> Value {
    server
        .ok(
            "addEvent",
            json!([server.key, {"object": "contact", "event": event}]),
        )
        .await
}

async fn gone(server: &Server, method: &str, id: &Value) -> bool {
    let reply = server.rpc(method, json!([server.key, id])).await;
    match reply["error"]["code"].as_i64() {
        Some(352 | 353) => true,
        None => false,
        Some(other) => panic!("{method} {id}: {other}: {reply}"),
    }
}

#[tokio::test]
async fn finished_history_is_removed_and_pending_work_stays_while_calls_and_delivery_go_on() {
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.set_reply(Reply::Status(503));
    // One try, then a retry an hour later: the failing receiver's delivery stays pending.
    let server = Server::start(&[
        "--allow-private-targets",
        "--retry-schedule",
        "1h",
        "--retention",
        "2s",
    ]);
    let add = |event: &str, url: String| json!([server.key, {"object": "contact", "event": event, "url": url}]);
    server
        .ok("addWebhook", add("subscribed", ok.url("/ok")))
        .await;
    server
        .ok("addWebhook", add("unsubscribed", failing.url("/pending")))
        .await;
    let doomed = server
        .ok("addWebhook", add("updated", failing.url("/doomed")))
        .await;
    // The newest webhook (like the newest event) is kept whatever its age, so that its id is
    // never given again: the doomed one must not be the newest.
    server
        .ok("addWebhook", add("removed", ok.url("/newest")))
        .await;

    // Five events in one call go out in one request: one attempt shared by five deliveries.
    let batch = server
        .ok(
            "addEvents",
            json!([
                server.key,
                vec![json!({"object": "contact", "event": "subscribed"}); 5]
            ]),
        )
        .await;
    let unmatched = server
        .ok(
            "addEvent",
            json!([server.key, {"object": "list", "event": "created"}]),
        )
        .await;
    let pending = add_event(&server, "unsubscribed").await;
    let cancelled = add_event(&server, "updated").await;
    let pending_delivery = server.delivery_of(&pending).await;
    let cancelled_delivery = server.delivery_of(&cancelled).await;
    for delivery in [&pending_delivery, &cancelled_delivery] {
        eventually(
            "a first failed attempt",
            Duration::from_secs(30),
            || async {
                let d = server
                    .ok("getDeliveryById", json!([server.key, delivery]))
                    .await;
                (d["attempt_count"] == 1).then_some(())
            },
        )
        .await;
    }
    server
        .ok("deleteWebhook", json!([server.key, doomed]))
        .await;
    let batch_deliveries: Vec<Value> = {
        let mut ids = Vec::new();
        for event in batch.as_array().unwrap() {
            ids.push(server.delivery_of(event).await);
        }
        ids
    };

    // Meanwhile the API and the engine keep working: an event published at every look is
    // delivered.
    let published = std::cell::RefCell::new(Vec::new());
    eventually(
        "finished history removed",
        Duration::from_secs(60),
        || async {
            let id = add_event(&server, "subscribed").await;
            published.borrow_mut().push(id);
            let mut all_gone = gone(&server, "getEventById", &unmatched).await
                && gone(&server, "getEventById", &cancelled).await
                && gone(&server, "getDeliveryById", &cancelled_delivery).await;
            for (event, delivery) in batch.as_array().unwrap().iter().zip(&batch_deliveries) {
                all_gone = all_gone
                    && gone(&server, "getEventById", event).await
                    && gone(&server, "getDeliveryById", delivery).await;
            }
            let webhook_gone = server.sql_number(&format!(
                "SELECT count(*) FROM webhooks WHERE id = {doomed}"
            )) == 0;
            (all_gone && webhook_gone).then_some(())
        },
    )
    .await;

    // Pending work stays, with its attempt.
    assert!(!gone(&server, "getEventById", &pending).await);
    let d = server
        .ok("getDeliveryById", json!([server.key, pending_delivery]))
        .await;
    assert_eq!(d["status"], "pending", "{d}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
    // No attempt is left that no delivery links to.
    let unlinked = server.sql_number(
        "SELECT count(*) FROM attempts a
         WHERE NOT EXISTS (SELECT 1 FROM delivery_attempts da WHERE da.attempt_id = a.id)",
    );
    assert_eq!(unlinked, 0);
    // Nor a row that names one removed (PostgreSQL has no foreign keys on these).
    let orphans = server.sql_number(
        "SELECT (SELECT count(*) FROM delivery_attempts da WHERE
                   NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = da.delivery_id)
                   OR NOT EXISTS (SELECT 1 FROM attempts a WHERE a.id = da.attempt_id))
              + (SELECT count(*) FROM deliveries d
                   WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id))",
    );
    assert_eq!(orphans, 0);
    eventually(
        "every event published meanwhile delivered",
        Duration::from_secs(60),
        || async {
            let received: Vec<Value> = ok.items().iter().map(|i| i["id"].clone()).collect();
            let published = published.borrow();
            published
                .iter()
                .all(|id| received.contains(id))
                .then_some(())
        },
    )
    .await;
    for kind in ["events", "deliveries", "attempts", "webhooks"] {
        let removed = metric(
            &server,
            &format!("hookrpc_retention_removed_total{{kind=\"{kind}\"}}"),
        )
        .await;
        assert!(removed >= 1.0, "{kind}: {removed}");
    }
    assert!(metric(&server, "hookrpc_retention_last_pass_timestamp_seconds").await > 0.0);
}

/// A delivery that became final recently keeps its event, however old the event is: retention
/// counts from the last delivery's final state, not from the event's creation.
#[tokio::test]
async fn retention_counts_from_when_the_last_delivery_became_final() {
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Status(503));
    let server = Server::start(&[
        "--allow-private-targets",
        "--retry-schedule",
        "12s",
        "--retention",
        "10s",
    ]);
    server
        .ok(
            "addWebhook",
            json!([server.key, webhook(&receiver.url("/late"))]),
        )
        .await;
    let event = add_event(&server, "subscribed").await;
    let delivery = server.delivery_of(&event).await;
    eventually("the first attempt", Duration::from_secs(30), || async {
        let d = server
            .ok("getDeliveryById", json!([server.key, delivery]))
            .await;
        (d["attempt_count"] == 1).then_some(())
    })
    .await;
    receiver.set_reply(Reply::Status(200));
    // Its retry, twelve seconds on, succeeds: the event is older than the retention by then,
    // but is kept for ten seconds more.
    server.delivery_with_status(&delivery, "succeeded").await;
    let succeeded = now_secs();
    // Not the newest event, which is kept whatever its age (its id is never given again).
    add_event(&server, "subscribed").await;
    // A pass that started after the success (one that ended two seconds later, passes taking
    // well under a second here) has looked at the event, and kept it.
    let pass = "hookrpc_retention_last_pass_timestamp_seconds";
    eventually(
        "a pass after the success",
        Duration::from_secs(30),
        || async { (metric(&server, pass).await >= (succeeded + 2) as f64).then_some(()) },
    )
    .await;
    assert!(!gone(&server, "getEventById", &event).await);
    eventually("the event removed", Duration::from_secs(60), || async {
        gone(&server, "getEventById", &event).await.then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_id_is_never_given_twice_however_much_is_removed() {
    // Receivers drop an item whose id they have seen: a removed event's id must never come
    // back, even when retention has removed everything there was.
    let receiver = Receiver::start().await;
    let server = Server::start(&["--allow-private-targets", "--retention", "1s"]);
    server
        .ok(
            "addWebhook",
            json!([server.key, webhook(&receiver.url("/"))]),
        )
        .await;
    let first = add_event(&server, "subscribed").await;
    let second = add_event(&server, "subscribed").await;
    let delivered = server.delivery_of(&second).await;
    server.delivery_with_status(&delivered, "succeeded").await;
    eventually(
        "the first event removed",
        Duration::from_secs(60),
        || async { gone(&server, "getEventById", &first).await.then_some(()) },
    )
    .await;
    let third = add_event(&server, "subscribed").await;
    let third_delivery = server.delivery_of(&third).await;
    assert!(third.as_i64() > second.as_i64(), "{third} after {second}");
    assert!(
        third_delivery.as_i64() > delivered.as_i64(),
        "{third_delivery} after {delivered}"
    );
}

/// A retention shorter than a request could remove a delivery cancelled while its request is out
/// before the receiver's answer is recorded: the server says so at start (short retentions are
/// for trying retention out, so it still starts).
#[tokio::test]
async fn a_retention_shorter_than_a_request_is_warned_about() {
    let short = Server::start(&["--retention", "5s"]);
    let long = Server::start(&["--retention", "5s", "--attempt-timeout", "5s"]);
    // Both answer calls; only the first said anything.
    short.ok("countWebhooks", json!([short.key])).await;
    long.ok("countWebhooks", json!([long.key])).await;
    let warning = "is shorter than --attempt-timeout";
    assert!(
        short
            .stderr()
            .contains("--retention (5s) is shorter than --attempt-timeout (10s)"),
        "{}",
        short.stderr()
    );
    assert!(!long.stderr().contains(warning), "{}", long.stderr());
}
