//! Event intake and delivery to a real receiver on 127.0.0.1: fan-out, matching, the wire
//! format of API.md §4, signatures checked by an independent Standard Webhooks library,
//! batching, idempotency, and what deactivating or deleting a webhook does to queued work.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn contact(event: &str, list_id: i64) -> Value {
    json!({"object": "contact", "event": event, "list_id": list_id})
}

async fn add_hook(server: &Server, key: &str, details: Value) -> Value {
    server.ok("addWebhook", json!([key, details])).await
}

/// Waits until the receiver holds `n` items; returns them by event id → webhook ids.
async fn received_by_event(receiver: &Receiver, n: usize) -> BTreeMap<i64, Vec<i64>> {
    let items = eventually(&format!("{n} items"), WAIT, || async {
        let items = receiver.items();
        (items.len() >= n).then_some(items)
    })
    .await;
    let mut by_event: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for item in items {
        by_event
            .entry(item["id"].as_i64().unwrap())
            .or_default()
            .push(item["webhook_id"].as_i64().unwrap());
    }
    by_event.values_mut().for_each(|w| w.sort());
    by_event
}

#[tokio::test]
async fn an_event_fans_out_to_every_matching_active_webhook_and_no_other() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    let key = server.key.clone();
    let url = |p: &str| receiver.url(p);
    let all_lists = add_hook(
        &server,
        &key,
        json!({"object": "contact", "event": "subscribed", "url": url("/all")}),
    )
    .await;
    let list_7 = add_hook(
        &server,
        &key,
        json!({"object": "contact", "event": "subscribed", "list_id": 7, "url": url("/7")}),
    )
    .await;
    let list_8 = add_hook(
        &server,
        &key,
        json!({"object": "contact", "event": "subscribed", "list_id": 8, "url": url("/8")}),
    )
    .await;
    let other_event = add_hook(
        &server,
        &key,
        json!({"object": "contact", "event": "unsubscribed", "url": url("/other-event")}),
    )
    .await;
    add_hook(
        &server,
        &key,
        json!({"object": "list", "event": "created", "url": url("/other-object")}),
    )
    .await;
    add_hook(&server, &key, json!({"object": "contact", "event": "subscribed", "url": url("/inactive"), "is_active": false})).await;
    let other_key = server.add_key("other", "full");
    add_hook(
        &server,
        &other_key,
        json!({"object": "contact", "event": "subscribed", "url": url("/other-account")}),
    )
    .await;

    let on_7 = server
        .ok("addEvent", json!([key, contact("subscribed", 7)]))
        .await;
    let on_9 = server
        .ok("addEvent", json!([key, contact("subscribed", 9)]))
        .await;

    let got = received_by_event(&receiver, 3).await;
    assert_eq!(
        got[&on_7.as_i64().unwrap()],
        vec![all_lists.as_i64().unwrap(), list_7.as_i64().unwrap()]
    );
    assert_eq!(
        got[&on_9.as_i64().unwrap()],
        vec![all_lists.as_i64().unwrap()]
    );
    let paths: BTreeSet<String> = receiver.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, BTreeSet::from(["/all".to_owned(), "/7".to_owned()]));
    assert_ne!(list_8, list_7);

    let event = server.ok("getEventById", json!([key, on_7])).await;
    assert_eq!(event["delivery_count"], 2);
    let event = server.ok("getEventById", json!([key, on_9])).await;
    assert_eq!(event["delivery_count"], 1);
    // The other account sees neither the events nor their deliveries.
    assert_eq!(
        server.err("getEventById", json!([other_key, on_7])).await.0,
        352
    );
    assert_eq!(server.ok("countDeliveries", json!([other_key])).await, 0);

    // Events of several kinds in one call (on PostgreSQL one statement, which finds the
    // webhooks once per kind): each still reaches its own webhooks.
    let events = [
        contact("subscribed", 7),
        contact("subscribed", 9),
        contact("unsubscribed", 7),
        contact("subscribed", 7),
    ];
    let ids = ids(&server.ok("addEvents", json!([key, events])).await);
    let (all, seven, other) = (
        all_lists.as_i64().unwrap(),
        list_7.as_i64().unwrap(),
        other_event.as_i64().unwrap(),
    );
    let expected = [vec![all, seven], vec![all], vec![other], vec![all, seven]];
    let got = received_by_event(&receiver, 3 + 6).await;
    for (id, webhooks) in ids.iter().zip(&expected) {
        assert_eq!(&got[id], webhooks, "event {id}");
        let event = server.ok("getEventById", json!([key, id])).await;
        assert_eq!(event["delivery_count"], webhooks.len(), "event {id}");
    }
}

#[tokio::test]
async fn the_request_is_the_wire_format_of_the_contract_signed_with_headers_and_basic_auth() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    let id = add_hook(
        &server,
        &server.key,
        json!({
            "object": "contact", "event": "unsubscribed", "url": receiver.url("/wire?x=1"),
            "headers": [{"name": "x-tenant", "value": "acme"}, {"name": "X-Trace", "value": "a b c"}],
            "auth": {"username": "hook", "password": "p:ss w0rd"},
        }),
    )
    .await;
    let event = server
        .ok(
            "addEvent",
            json!([server.key, {"object": "contact", "event": "unsubscribed", "list_id": 123,
                                "contact_id": 142, "data": {"reason": "too many emails", "n": [1, 2]}}]),
        )
        .await;
    let got = eventually("the request", WAIT, || async {
        receiver.received().into_iter().next()
    })
    .await;
    let delivery = server.delivery_of(&event).await;
    let stored = server.ok("getEventById", json!([server.key, event])).await;

    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        body,
        json!([{"id": event, "delivery_id": delivery, "webhook_id": id, "object": "contact",
                "event": "unsubscribed", "list_id": 123, "contact_id": 142,
                "timestamp": stored["creation_time"], "data": {"reason": "too many emails", "n": [1, 2]}}])
    );
    let h = &got.headers;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        h["user-agent"],
        concat!("hookrpc/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(h["x-tenant"], "acme");
    assert_eq!(h["x-trace"], "a b c");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("hook:p:ss w0rd");
    assert_eq!(h["authorization"], format!("Basic {basic}").as_str());
    assert!(h["webhook-id"].to_str().unwrap().starts_with("msg_"));
    let timestamp: i64 = h["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    assert!((timestamp - stored["creation_time"].as_i64().unwrap()).abs() < 120);

    let secret = server.ok("getWebhookById", json!([server.key, id])).await["secret"].clone();
    standardwebhooks::Webhook::new(secret.as_str().unwrap())
        .unwrap()
        .verify(&got.body, h)
        .expect("the signature verifies with the Standard Webhooks library");
    let wrong = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    assert!(standardwebhooks::Webhook::new(wrong)
        .unwrap()
        .verify(&got.body, h)
        .is_err());

    let done = server.delivery_with_status(&delivery, "succeeded").await;
    assert_eq!(done["attempt_count"], 1);
    assert_eq!(done["last_status_code"], 200);
    assert_eq!(done["next_attempt_time"], Value::Null);
    assert_eq!(done["attempts"][0]["status_code"], 200);
    assert_eq!(done["attempts"][0]["response_body"], "ok");
    assert_eq!(done["attempts"][0]["error"], Value::Null);
    let webhook = server.ok("getWebhookById", json!([server.key, id])).await;
    assert!(webhook["last_success_time"].is_i64(), "{webhook}");
    assert_eq!(webhook["last_error"], Value::Null);
}

#[tokio::test]
async fn numbers_in_data_and_metadata_arrive_exactly_as_written() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    // What a double cannot hold (beyond 64 bits, more digits than it keeps) and what it would
    // write otherwise (1e2 as 100.0, 1.50 as 1.5): written by hand, since a `Value` would round.
    let numbers = r#"{"big": 12345678901234567890123, "below": -9223372036854775809,
                       "long": 0.1000000000000000055511151231257827, "e": 1e2, "price": 1.50,
                       "nested": [18446744073709551616, {"s": "a \" }"}]}"#;
    // Kept as written but for the whitespace between tokens.
    let written = r#"{"big":12345678901234567890123,"below":-9223372036854775809,"long":0.1000000000000000055511151231257827,"e":1e2,"price":1.50,"nested":[18446744073709551616,{"s":"a \" }"}]}"#;
    let details = format!(
        r#"{{"object": "contact", "event": "unsubscribed", "url": "{}", "metadata": {numbers}}}"#,
        receiver.url("/n")
    );
    let id = result_of(&written_call(&server, "addWebhook", &details).await);
    let event = format!(r#"{{"object": "contact", "event": "unsubscribed", "data": {numbers}}}"#);
    let event_id = result_of(&written_call(&server, "addEvent", &event).await);

    let kept = format!(r#""data":{written}"#);
    let got = eventually("the request", WAIT, || async {
        receiver.received().into_iter().next()
    })
    .await;
    let body = String::from_utf8(got.body.to_vec()).unwrap();
    assert!(body.contains(&kept), "{body}\nnot containing {kept}");
    let stored = written_call(&server, "getEventById", &event_id.to_string()).await;
    assert!(stored.contains(&kept), "{stored}");
    let webhook = written_call(&server, "getWebhookById", &id.to_string()).await;
    assert!(
        webhook.contains(&format!(r#""metadata":{written}"#)),
        "{webhook}"
    );

    // The same by name, in a batch of events, in an edit, and in the Vision6 dialect.
    let key = &server.key;
    let by_name = [
        format!(
            r#"{{"jsonrpc": "2.0", "id": 1, "method": "addEvents", "params": {{"api_key": "{key}",
                "events": [{{"object": "list", "event": "created"}}, {event}]}}}}"#
        ),
        format!(r#"{{"id": 1, "method": "addEvent", "params": ["{key}", {event}]}}"#),
    ];
    for call in by_name {
        let (_, reply) = server.post_raw("/", call).await;
        let reply: Value = serde_json::from_str(&reply).unwrap();
        let event_id = reply["result"]
            .as_array()
            .map_or(&reply["result"], |ids| &ids[1]);
        let stored = written_call(&server, "getEventById", &event_id.to_string()).await;
        assert!(stored.contains(&kept), "{stored}");
    }
    let edit = format!(
        r#"{{"jsonrpc": "2.0", "id": 1, "method": "editWebhook", "params": {{"api_key": "{key}",
            "webhook_id": {id}, "webhook_details": {{"metadata": {{"edited": {numbers}}}}}}}}}"#
    );
    server.post_raw("/", edit).await;
    let webhook = written_call(&server, "getWebhookById", &id.to_string()).await;
    assert!(
        webhook.contains(&format!(r#""metadata":{{"edited":{written}}}"#)),
        "{webhook}"
    );
}

/// A call with the key and `param` written by hand (a `Value` would round its numbers); the
/// reply's text.
async fn written_call(server: &Server, method: &str, param: &str) -> String {
    let key = &server.key;
    let call = format!(
        r#"{{"jsonrpc": "2.0", "id": 1, "method": "{method}", "params": ["{key}", {param}]}}"#
    );
    server.post_raw("/", call).await.1
}

/// The id a call's reply carries as its result.
fn result_of(reply: &str) -> i64 {
    let reply: Value = serde_json::from_str(reply).unwrap();
    reply["result"]
        .as_i64()
        .unwrap_or_else(|| panic!("{reply}"))
}

#[tokio::test]
async fn after_rotation_both_secrets_sign_for_a_while() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    let id = add_hook(&server, &server.key, webhook(&receiver.url("/r"))).await;
    let old = server.ok("getWebhookById", json!([server.key, id])).await["secret"].clone();
    let new = server
        .ok("rotateWebhookSecret", json!([server.key, id]))
        .await;
    assert_ne!(old, new);
    assert!(new.as_str().unwrap().starts_with("whsec_"));
    server
        .ok("addEvent", json!([server.key, contact("subscribed", 0)]))
        .await;
    let got = eventually("the request", WAIT, || async {
        receiver.received().into_iter().next()
    })
    .await;
    let header = got.headers["webhook-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        header.split(' ').filter(|s| s.starts_with("v1,")).count(),
        2,
        "{header}"
    );
    for secret in [&old, &new] {
        standardwebhooks::Webhook::new(secret.as_str().unwrap())
            .unwrap()
            .verify(&got.body, &got.headers)
            .unwrap_or_else(|e| panic!("{secret} does not verify: {e:?}"));
    }
}

#[tokio::test]
async fn a_burst_arrives_in_batches_of_at_most_batch_size_each_event_once_per_success() {
    let receiver = Receiver::start().await;
    // One request at a time to the webhook, so a burst queues up behind the first request.
    let mut args = FAST.to_vec();
    args.extend(["--webhook-concurrency", "1"]);
    let server = Server::start(&args);
    let mut details = webhook(&receiver.url("/batch"));
    details["batch_size"] = json!(25);
    add_hook(&server, &server.key, details).await;
    receiver.set_reply(Reply::Slow(Duration::from_millis(200)));
    let mut sent = BTreeSet::new();
    for _ in 0..4 {
        let events: Vec<Value> = (0..50).map(|_| contact("subscribed", 1)).collect();
        let ids = server.ok("addEvents", json!([server.key, events])).await;
        sent.extend(ids.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()));
    }
    let received = eventually("all 200 events", WAIT, || async {
        let got: BTreeSet<i64> = receiver
            .items()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect();
        (got == sent).then(|| receiver.received())
    })
    .await;
    assert!(
        received.len() < sent.len(),
        "{} requests for {} events",
        received.len(),
        sent.len()
    );
    assert!(
        received.iter().any(|r| r.items().len() > 1),
        "some request carried several events"
    );
    for request in &received {
        let ids: Vec<i64> = request
            .items()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect();
        assert!(ids.len() <= 25, "batch of {}", ids.len());
        let unique: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "an event twice in one request: {ids:?}"
        );
    }
    let succeeded = eventually("every delivery succeeded", WAIT, || async {
        let n = server
            .ok(
                "countDeliveries",
                json!([server.key, [["status", "exactly", "succeeded"]]]),
            )
            .await;
        (n == 200).then_some(n)
    })
    .await;
    assert_eq!(succeeded, 200);
}

/// A burst fanned out to many webhooks, with room in memory for only one batch at a time:
/// each request still carries a full batch of one webhook, not a slice of every webhook.
#[tokio::test]
async fn a_burst_to_many_webhooks_goes_out_in_full_batches() {
    let receiver = Receiver::start().await;
    let mut args = FAST.to_vec();
    args.extend(["--delivery-concurrency", "1"]);
    let server = Server::start(&args);
    for i in 0..10 {
        let mut details = webhook(&receiver.url(&format!("/many/{i}")));
        details["batch_size"] = json!(100);
        add_hook(&server, &server.key, details).await;
    }
    let events: Vec<Value> = (0..100).map(|_| contact("subscribed", 1)).collect();
    server.ok("addEvents", json!([server.key, events])).await;
    let by_event = received_by_event(&receiver, 1000).await;
    assert_eq!(by_event.len(), 100);
    assert!(by_event.values().all(|hooks| hooks.len() == 10));
    let sizes: Vec<usize> = receiver
        .received()
        .iter()
        .map(|r| r.items().len())
        .collect();
    assert_eq!(sizes, vec![100; 10], "items per request");
}

#[tokio::test]
async fn add_events_is_all_or_nothing_and_idempotency_keys_dedupe() {
    let server = Server::start(FAST);
    let key = server.key.clone();
    let (code, data) = server
        .err(
            "addEvents",
            json!([key, [contact("subscribed", 1), {"object": "contact", "event": "bulk_updated"}, contact("created", 1)]]),
        )
        .await;
    assert_eq!(code, 310);
    assert_eq!(data[0]["field"], "events[1].event", "{data}");
    assert_eq!(server.ok("countEvents", json!([key])).await, 0);
    assert_eq!(server.err("addEvents", json!([key, []])).await.0, 310);
    let too_many: Vec<Value> = (0..1001).map(|_| contact("created", 0)).collect();
    assert_eq!(server.err("addEvents", json!([key, too_many])).await.0, 310);
    assert_eq!(server.ok("countEvents", json!([key])).await, 0);

    let ids = server
        .ok(
            "addEvents",
            json!([key, [contact("subscribed", 1), contact("created", 2)]]),
        )
        .await;
    assert_eq!(ids.as_array().unwrap().len(), 2);

    let mut details = contact("updated", 3);
    details["idempotency_key"] = json!("order-42");
    let first = server.ok("addEvent", json!([key, details])).await;
    let again = server.ok("addEvent", json!([key, details])).await;
    assert_eq!(first, again);
    let in_batch = server
        .ok("addEvents", json!([key, [details, contact("updated", 4)]]))
        .await;
    assert_eq!(in_batch[0], first);
    assert_eq!(server.ok("countEvents", json!([key])).await, 4);
    // Keys are per account: another account's identical key is a new event.
    let other = server.add_key("other", "standard");
    let theirs = server.ok("addEvent", json!([other, details])).await;
    assert_ne!(theirs, first);

    let stored = server.ok("getEventById", json!([key, first])).await;
    assert_eq!(stored["idempotency_key"], "order-42");
    assert_eq!(stored["list_id"], 3);
    assert_eq!(stored["contact_id"], Value::Null);
    assert_eq!(stored["data"], json!({}));
    assert_eq!(stored["delivery_count"], 0);
    let found = server
        .ok(
            "searchEvents",
            json!([
                key,
                [["event", "in", "updated,created"]],
                0,
                0,
                "list_id",
                "ASC"
            ]),
        )
        .await;
    let lists: Vec<i64> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["list_id"].as_i64().unwrap())
        .collect();
    assert_eq!(lists, vec![2, 3, 4]);
    assert_eq!(
        server
            .ok(
                "countEvents",
                json!([key, [["idempotency_key", "exactly", "order-42"]]])
            )
            .await,
        1
    );
    assert_eq!(server.err("getEventById", json!([key, 999])).await.0, 352);
    assert_eq!(
        server
            .err("searchEvents", json!([key, [["data", "exactly", "x"]]]))
            .await
            .0,
        311
    );
}

#[tokio::test]
async fn test_webhook_sends_a_ping_now() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    let mut details = webhook(&receiver.url("/ping"));
    details["is_active"] = json!(false);
    let id = add_hook(&server, &server.key, details).await;
    let standard = server.add_key("default", "standard");
    let delivery = server.ok("testWebhook", json!([standard, id])).await;
    let got = eventually("the ping", WAIT, || async {
        receiver.received().into_iter().next()
    })
    .await;
    let item = &got.items()[0];
    assert_eq!(item["event"], "ping");
    assert_eq!(item["webhook_id"], id);
    assert_eq!(item["delivery_id"], delivery);
    server.delivery_with_status(&delivery, "succeeded").await;
    assert_eq!(
        server.err("testWebhook", json!([server.key, 999])).await.0,
        350
    );
}

#[tokio::test]
async fn deactivating_or_deleting_cancels_pending_work_and_nothing_more_is_sent() {
    let receiver = Receiver::start().await;
    let server = Server::start(&["--allow-private-targets", "--retry-schedule", "1h"]);
    receiver.set_reply(Reply::Status(503));
    let paused = add_hook(&server, &server.key, webhook(&receiver.url("/paused"))).await;
    let deleted = add_hook(&server, &server.key, json!({"object": "contact", "event": "subscribed", "list_id": 5, "url": receiver.url("/deleted")})).await;
    let event = server
        .ok("addEvent", json!([server.key, contact("subscribed", 5)]))
        .await;
    eventually("both first attempts", WAIT, || async {
        (receiver.received().len() >= 2).then_some(())
    })
    .await;
    let deliveries = server
        .ok(
            "searchDeliveries",
            json!([
                server.key,
                [["event_id", "exactly", event]],
                0,
                0,
                "webhook_id",
                "ASC"
            ]),
        )
        .await;
    let ids: Vec<Value> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    for id in &ids {
        // The receiver saw the request before the attempt was recorded: wait for the record.
        let d = eventually("the first attempt recorded", WAIT, || async {
            let d = server.ok("getDeliveryById", json!([server.key, id])).await;
            (d["attempt_count"] == 1).then_some(d)
        })
        .await;
        assert_eq!(d["status"], "pending");
        assert!(d["next_attempt_time"].is_i64());
    }
    server
        .ok(
            "editWebhook",
            json!([server.key, paused, {"is_active": false}]),
        )
        .await;
    server
        .ok("deleteWebhook", json!([server.key, deleted]))
        .await;
    for id in &ids {
        let d = server.delivery_with_status(id, "cancelled").await;
        assert_eq!(d["next_attempt_time"], Value::Null);
    }
    // New events reach neither; the deleted webhook is gone, the paused one still readable.
    receiver.set_reply(Reply::Status(200));
    let later = server
        .ok("addEvent", json!([server.key, contact("subscribed", 5)]))
        .await;
    assert_eq!(
        server.ok("getEventById", json!([server.key, later])).await["delivery_count"],
        0
    );
    assert_eq!(
        server
            .err("getWebhookById", json!([server.key, deleted]))
            .await
            .0,
        350
    );
    // A cancelled delivery of a reactivated webhook can be retried and then succeeds.
    server
        .ok(
            "editWebhook",
            json!([server.key, paused, {"is_active": true}]),
        )
        .await;
    let paused_delivery = &ids[0];
    assert_eq!(
        server
            .ok("retryDelivery", json!([server.key, paused_delivery]))
            .await,
        true
    );
    server
        .delivery_with_status(paused_delivery, "succeeded")
        .await;
    assert_eq!(
        server
            .err("retryDelivery", json!([server.key, ids[1]]))
            .await
            .0,
        310
    );
    assert_eq!(receiver.received().len(), 3);
}
