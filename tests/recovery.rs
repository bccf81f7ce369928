//! Nothing acknowledged is lost: not on a graceful restart, not on kill -9 in the middle of a
//! burst. Deliveries are at-least-once; the duplicates a crash causes are counted and reported.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn event() -> Value {
    json!({"object": "contact", "event": "subscribed", "list_id": 1})
}

/// Waits until every id of `acknowledged` reached the receiver; returns how many items arrived
/// more than once.
async fn all_arrive(receiver: &Receiver, acknowledged: &BTreeSet<i64>) -> usize {
    let counts = eventually(
        &format!("all {} acknowledged events to arrive", acknowledged.len()),
        WAIT,
        || async {
            let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
            for item in receiver.items() {
                *counts.entry(item["id"].as_i64().unwrap()).or_default() += 1;
            }
            acknowledged
                .iter()
                .all(|id| counts.contains_key(id))
                .then_some(counts)
        },
    )
    .await;
    counts.values().map(|n| n - 1).sum()
}

#[tokio::test]
async fn events_acknowledged_before_a_graceful_restart_are_delivered_after_it() {
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Status(503));
    let mut server = Server::start(&["--allow-private-targets", "--retry-schedule", "200ms"]);
    server
        .ok(
            "addWebhook",
            json!([server.key, webhook(&receiver.url("/"))]),
        )
        .await;
    let events: Vec<Value> = (0..300).map(|_| event()).collect();
    let ids = server.ok("addEvents", json!([server.key, events])).await;
    let acknowledged: BTreeSet<i64> = common::ids(&ids).into_iter().collect();
    server.stop(); // SIGTERM: stop intake, let in-flight attempts finish, exit
    receiver.set_reply(Reply::Status(200));
    server.restart();
    let duplicates = all_arrive(&receiver, &acknowledged).await;
    eprintln!(
        "graceful restart: {} events, {duplicates} duplicates",
        acknowledged.len()
    );
    // Every delivery is eventually marked, not only received.
    let done = eventually("every delivery marked succeeded", WAIT, || async {
        let n = server
            .ok(
                "countDeliveries",
                json!([server.key, [["status", "exactly", "succeeded"]]]),
            )
            .await;
        (n == 300).then_some(n)
    })
    .await;
    assert_eq!(done, 300);
}

#[tokio::test]
async fn kill_9_during_a_10k_burst_loses_no_acknowledged_event() {
    let receiver = Receiver::start().await;
    // A receiver a little slow, so the crash finds work in flight and work queued.
    receiver.set_reply(Reply::Slow(Duration::from_millis(20)));
    let mut server = Server::start(&[
        "--allow-private-targets",
        "--retry-schedule",
        "100ms",
        "--attempt-timeout",
        "500ms",
        "--lease",
        "1s",
    ]);
    let mut details = webhook(&receiver.url("/"));
    details["batch_size"] = json!(50);
    server.ok("addWebhook", json!([server.key, details])).await;

    // The publisher talks HTTP on its own, like an application would, and keeps what was
    // acknowledged; calls cut off by the crash are not acknowledged.
    let url = server.url();
    let key = server.key.clone();
    let publisher = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut acknowledged = BTreeSet::new();
        for call in 0..20 {
            let events: Vec<Value> = (0..500).map(|_| event()).collect();
            let request = json!({"jsonrpc": "2.0", "id": call, "method": "addEvents", "params": [key, events]});
            let Ok(response) = client
                .post(&url)
                .header("content-type", "application/json")
                .body(request.to_string())
                .send()
                .await
            else {
                break;
            };
            let Ok(text) = response.text().await else {
                break;
            };
            let Ok(reply) = serde_json::from_str::<Value>(&text) else {
                break;
            };
            let Some(ids) = reply["result"].as_array() else {
                break;
            };
            acknowledged.extend(ids.iter().map(|v| v.as_i64().unwrap()));
        }
        acknowledged
    });
    eventually("part of the burst delivered", WAIT, || async {
        (receiver.items().len() >= 1000).then_some(())
    })
    .await;
    server.kill9();
    let acknowledged = publisher.await.unwrap();
    let received_before = receiver.items().len();
    assert!(
        acknowledged.len() >= 1000,
        "only {} acknowledged",
        acknowledged.len()
    );

    receiver.set_reply(Reply::Status(200));
    server.restart();
    let duplicates = all_arrive(&receiver, &acknowledged).await;
    eprintln!(
        "kill -9: {} events acknowledged, {received_before} items received before the crash, \
         {duplicates} duplicates after recovery",
        acknowledged.len()
    );
    // Events of calls the crash cut off may or may not be stored; either way the server is
    // consistent: every stored event has its delivery.
    let stored = server.ok("countEvents", json!([server.key])).await;
    assert!(stored.as_u64().unwrap() >= acknowledged.len() as u64);
    assert_eq!(
        server.ok("countDeliveries", json!([server.key])).await,
        stored
    );
}

#[tokio::test]
async fn shutdown_hands_back_what_it_did_not_send() {
    // One request at a time, hung at the receiver past the grace period; the lease is an hour,
    // so what is not handed back at shutdown would not be sent again in this test.
    let mut server = Server::start(&[
        "--allow-private-targets",
        "--webhook-concurrency",
        "1",
        "--lease",
        "1h",
        "--shutdown-grace",
        "300ms",
    ]);
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Slow(Duration::from_secs(30)));
    let details = json!({"object": "contact", "event": "subscribed", "url": receiver.url("/"),
        "batch_size": 1});
    server.ok("addWebhook", json!([server.key, details])).await;
    let ids = server
        .ok(
            "addEvents",
            json!([server.key, [event(), event(), event()]]),
        )
        .await;
    eventually(
        "the first request hangs at the receiver",
        Duration::from_secs(30),
        || async { (!receiver.received().is_empty()).then_some(()) },
    )
    .await;
    server.stop();
    receiver.set_reply(Reply::Status(200));
    server.restart();
    for id in ids.as_array().unwrap() {
        let delivery = server.delivery_of(id).await;
        server.delivery_with_status(&delivery, "succeeded").await;
    }
}
