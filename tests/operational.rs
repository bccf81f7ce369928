//! Operational events: hookrpc tells an account about its own webhooks (circuit opened and
//! closed, webhook deactivated, delivery failed) with events of that account, delivered to a
//! real receiver like any other event, and never about a delivery of one of them.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Retries quick and many: a delivery stays pending through a few probes of an open circuit.
const PATIENT: &[&str] = &[
    "--allow-private-targets",
    "--retry-schedule",
    "20ms,20ms,20ms,20ms,20ms,20ms,20ms,20ms,20ms,20ms,20ms,20ms,20ms,20ms,20ms",
    "--attempt-timeout",
    "2s",
];

/// A server with [`PATIENT`] retries and these further flags.
fn patient_server(flags: &[&str]) -> Server {
    Server::start(&[PATIENT, flags].concat())
}

/// Turns `webhook` on or off, as its owner would.
async fn set_active(server: &Server, webhook: &Value, on: bool) {
    let edit = json!([server.key, webhook, {"is_active": on}]);
    server.ok("editWebhook", edit).await;
}

/// The delivery once its first attempt is recorded.
async fn first_attempt_recorded(server: &Server, delivery: &Value) -> Value {
    eventually("its answer recorded", WAIT, || async {
        let d = server
            .ok("getDeliveryById", json!([server.key, delivery]))
            .await;
        (d["attempt_count"] == 1).then_some(d)
    })
    .await
}

/// A webhook of the account of `key` on `object` following `events`; returns its id.
async fn follow(server: &Server, key: &str, object: &str, events: Value, url: String) -> Value {
    let details = json!({"object": object, "events": events, "url": url});
    server.ok("addWebhook", json!([key, details])).await
}

/// One `contact.created` webhook at `url` and one event for it; returns (webhook, delivery).
async fn one_delivery(server: &Server, url: String) -> (Value, Value) {
    let webhook = follow(server, &server.key, "contact", json!(["created"]), url).await;
    let event = json!({"object": "contact", "event": "created"});
    let event = server.ok("addEvent", json!([server.key, event])).await;
    (webhook, server.delivery_of(&event).await)
}

/// The items `receiver` got of `object.event`, once there are at least `count`.
async fn told(receiver: &Receiver, object: &str, event: &str, count: usize) -> Vec<Value> {
    eventually(&format!("{count} × {object}.{event}"), WAIT, || async {
        let items: Vec<Value> = receiver
            .items()
            .into_iter()
            .filter(|i| i["object"] == object && i["event"] == event)
            .collect();
        (items.len() >= count).then_some(items)
    })
    .await
}

/// How many `object.event` events the server's account holds.
async fn count_told(server: &Server, object: &str, event: &str) -> Value {
    let criteria = json!([["object", "exactly", object], ["event", "exactly", event]]);
    server
        .ok("countEvents", json!([server.key, criteria]))
        .await
}

async fn webhook_state(server: &Server, id: &Value) -> Value {
    server.ok("getWebhookById", json!([server.key, id])).await
}

#[tokio::test]
async fn an_opening_and_a_closing_circuit_are_told_to_the_account_only() {
    let server = patient_server(&[
        "--circuit-threshold",
        "2",
        "--circuit-probe-interval",
        "300ms",
    ]);
    let (failing, ops, strangers, listed) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    failing.set_reply(Reply::Status(503));
    follow(&server, &server.key, "webhook", json!(["*"]), ops.url("/")).await;
    // Operational events have list_id 0: a webhook of one list never gets them.
    let of_a_list =
        json!({"object": "webhook", "events": ["*"], "list_id": 5, "url": listed.url("/")});
    server
        .ok("addWebhook", json!([server.key, of_a_list]))
        .await;
    let other = server.add_key("other", "full");
    follow(&server, &other, "webhook", json!(["*"]), strangers.url("/")).await;
    let (webhook, delivery) = one_delivery(&server, failing.url("/hook")).await;

    let opened = told(&ops, "webhook", "circuit_opened", 1).await;
    assert_eq!(
        opened[0]["data"],
        json!({"webhook_id": webhook, "url": failing.url("/hook"),
               "consecutive_failures": 2, "last_error": "HTTP 503"})
    );
    assert_eq!(
        webhook_state(&server, &webhook).await["circuit_state"],
        "open"
    );
    // An ordinary event of the account: it can be read and searched like any other.
    let event = server
        .ok("getEventById", json!([server.key, opened[0]["id"]]))
        .await;
    assert_eq!(
        (event["object"].clone(), event["list_id"].clone()),
        (json!("webhook"), json!(0))
    );
    // Queued for the account's webhook following all lists only, not for the one of list 5
    // (counted when it was published, so this does not wait on any delivery).
    assert_eq!(event["delivery_count"], 1, "{event}");

    failing.set_reply(Reply::Status(200));
    let closed = told(&ops, "webhook", "circuit_closed", 1).await;
    assert_eq!(
        closed[0]["data"],
        json!({"webhook_id": webhook, "url": failing.url("/hook")})
    );
    server.delivery_with_status(&delivery, "succeeded").await;
    // Each change is told once, and to this account alone.
    assert_eq!(count_told(&server, "webhook", "circuit_opened").await, 1);
    assert_eq!(count_told(&server, "webhook", "circuit_closed").await, 1);
    assert!(strangers.received().is_empty());
    assert!(listed.received().is_empty());
    let theirs = server.ok("countEvents", json!([other, []])).await;
    assert_eq!(theirs, 0);
}

#[tokio::test]
async fn gone_is_told_once_as_a_deactivation_and_a_failed_delivery() {
    let server = Server::start(PATIENT);
    let (gone, ops) = (Receiver::start().await, Receiver::start().await);
    // Three one-item requests in flight at once, each answered 410: the first answer
    // deactivates the webhook and cancels the other two deliveries while they are on the wire.
    gone.set_reply(Reply::SlowStatus(Duration::from_millis(200), 410));
    follow(
        &server,
        &server.key,
        "webhook",
        json!(["deactivated"]),
        ops.url("/w"),
    )
    .await;
    follow(
        &server,
        &server.key,
        "delivery",
        json!(["failed"]),
        ops.url("/d"),
    )
    .await;
    let (webhook, events) = server.three_requests_out(&gone).await;

    let deactivated = told(&ops, "webhook", "deactivated", 1).await;
    let data = &deactivated[0]["data"];
    assert_eq!(data["webhook_id"], webhook);
    assert_eq!(data["url"], gone.url("/"));
    assert!(data["reason"].as_str().unwrap().contains("410"), "{data}");
    let failed = told(&ops, "delivery", "failed", 1).await;
    let delivery = failed[0]["data"]["delivery_id"].clone();
    let d = server.delivery_with_status(&delivery, "failed").await;
    assert_eq!(
        failed[0]["data"],
        json!({"delivery_id": delivery, "webhook_id": webhook, "event_id": d["event_id"],
               "last_error": "HTTP 410"})
    );
    assert!(events.as_array().unwrap().contains(&d["event_id"]));
    // The other two were cancelled, not failed: told of neither, and of one deactivation,
    // once all three answers are recorded.
    let theirs = json!([server.key, [["webhook_id", "exactly", webhook]]]);
    eventually("every answer recorded", WAIT, || async {
        let all = server.ok("searchDeliveries", theirs.clone()).await;
        let all = all.as_array().unwrap();
        all.iter()
            .all(|d| d["attempt_count"] == 1 && d["status"] != "pending")
            .then_some(())
    })
    .await;
    let all = server.ok("searchDeliveries", theirs).await;
    let statuses = all.as_array().unwrap().iter().map(|d| &d["status"]);
    assert_eq!(statuses.filter(|s| *s == "cancelled").count(), 2);
    assert_eq!(count_told(&server, "webhook", "deactivated").await, 1);
    assert_eq!(count_told(&server, "delivery", "failed").await, 1);
    assert_eq!(webhook_state(&server, &webhook).await["is_active"], false);
}

/// A server whose circuits open at the first failure, probe every `probe_interval` and turn a
/// webhook off after `disable_after`; a webhook there whose receiver answers 500, with the
/// account's operational events followed at a second receiver; and the delivery of one event
/// to it. Returns the server, the two receivers, the webhook and the delivery.
async fn a_failing_webhook(
    probe_interval: &str,
    disable_after: &str,
) -> (Server, Receiver, Receiver, Value, Value) {
    let server = patient_server(&[
        "--circuit-threshold",
        "1",
        "--circuit-probe-interval",
        probe_interval,
        "--disable-after",
        disable_after,
    ]);
    let (failing, ops) = (Receiver::start().await, Receiver::start().await);
    failing.set_reply(Reply::Status(500));
    follow(&server, &server.key, "webhook", json!(["*"]), ops.url("/")).await;
    let (webhook, delivery) = one_delivery(&server, failing.url("/")).await;
    (server, failing, ops, webhook, delivery)
}

#[tokio::test]
async fn a_circuit_open_longer_than_disable_after_deactivates_its_webhook() {
    let (server, failing, ops, webhook, delivery) = a_failing_webhook("200ms", "1s").await;

    let deactivated = told(&ops, "webhook", "deactivated", 1).await;
    assert_eq!(deactivated[0]["data"]["webhook_id"], webhook);
    assert_eq!(deactivated[0]["data"]["url"], failing.url("/"));
    let reason = deactivated[0]["data"]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("circuit stayed open for more than 1s"),
        "{reason}"
    );
    let w = webhook_state(&server, &webhook).await;
    assert_eq!(w["is_active"], false);
    let why = w["last_error"]["message"].as_str().unwrap();
    assert!(why.ends_with("webhook deactivated"), "{why}");
    // Its pending work is cancelled.
    server.delivery_with_status(&delivery, "cancelled").await;
    assert_eq!(count_told(&server, "webhook", "circuit_opened").await, 1);
    assert_eq!(count_told(&server, "webhook", "deactivated").await, 1);

    // Turned on again, it starts afresh: circuit closed, nothing counted against it.
    failing.set_reply(Reply::Status(200));
    set_active(&server, &webhook, true).await;
    let w = webhook_state(&server, &webhook).await;
    assert_eq!(
        (
            w["circuit_state"].clone(),
            w["consecutive_failures"].clone()
        ),
        (json!("closed"), json!(0))
    );
    let event = json!({"object": "contact", "event": "created"});
    let event = server.ok("addEvent", json!([server.key, event])).await;
    let again = server.delivery_of(&event).await;
    server.delivery_with_status(&again, "succeeded").await;
}

#[tokio::test]
async fn disable_after_zero_never_deactivates() {
    let (server, failing, ops, webhook, _) = a_failing_webhook("100ms", "0").await;
    told(&ops, "webhook", "circuit_opened", 1).await;
    // Probes keep failing on a circuit open for longer and longer: the webhook stays on (with
    // 0 read as "at once", the first failed probe would have turned it off).
    eventually("five failed probes", WAIT, || async {
        (failing.received().len() >= 6).then_some(())
    })
    .await;
    let w = webhook_state(&server, &webhook).await;
    assert_eq!(
        (w["is_active"].clone(), w["circuit_state"].clone()),
        (json!(true), json!("open"))
    );
    assert_eq!(count_told(&server, "webhook", "deactivated").await, 0);
}

#[tokio::test]
async fn a_failed_delivery_is_told_but_never_one_of_an_operational_event() {
    let server = Server::start(&[
        "--allow-private-targets",
        "--retry-schedule",
        "20ms,20ms",
        "--attempt-timeout",
        "2s",
    ]);
    let failing = Receiver::start().await;
    failing.set_reply(Reply::Status(500));
    // The account's own listener of failures fails too: its delivery of `delivery.failed`
    // fails in turn, and that is not told (or it would never end).
    let listener = follow(
        &server,
        &server.key,
        "delivery",
        json!(["failed"]),
        failing.url("/ops"),
    )
    .await;
    let (webhook, delivery) = one_delivery(&server, failing.url("/")).await;
    server.delivery_with_status(&delivery, "failed").await;

    let failures = json!([
        ["object", "exactly", "delivery"],
        ["event", "exactly", "failed"]
    ]);
    let events = server
        .ok("searchEvents", json!([server.key, failures]))
        .await;
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    let told = &events[0];
    assert_eq!(told["data"]["delivery_id"], delivery);
    assert_eq!(told["data"]["webhook_id"], webhook);
    assert_eq!(told["data"]["last_error"], "HTTP 500");
    let to_listener = server.delivery_of(&told["id"]).await;
    let d = server.delivery_with_status(&to_listener, "failed").await;
    assert_eq!(d["webhook_id"], listener);
    // Nothing more comes of it.
    assert_eq!(count_told(&server, "delivery", "failed").await, 1);
}

#[tokio::test]
async fn publishers_cannot_pass_off_events_as_hookrpcs_own() {
    let server = Server::start(&[]);
    for object in ["webhook", "delivery"] {
        let event = json!({"object": object, "event": "failed"});
        let (code, data) = server.err("addEvent", json!([server.key, event])).await;
        assert_eq!(code, 310);
        assert!(data.to_string().contains("hookrpc's own"), "{data}");
        // In a call of several, all or nothing; by name too.
        let mixed = json!({"api_key": server.key,
                           "events": [{"object": "contact", "event": "created"}, event]});
        assert_eq!(server.err("addEvents", mixed).await.0, 310);
        // The Vision6 dialect gets the same answer in its own shape.
        let call = json!({"id": 7, "method": "addEvent", "params": [server.key, event]});
        let (status, text) = server.post_raw("/", call.to_string()).await;
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            (reply["id"].clone(), reply["result"].clone()),
            (json!(7), Value::Null),
            "{reply}"
        );
        assert_eq!(reply["error"]["code"], 310, "{reply}");
        assert!(reply.get("jsonrpc").is_none(), "{reply}");
    }
    assert_eq!(server.ok("countEvents", json!([server.key])).await, 0);
    // Following them is what they are for.
    let ops = json!({"object": "webhook", "event": "deactivated", "url": "https://ops.acme.io/"});
    server.ok("addWebhook", json!([server.key, ops])).await;
}

#[tokio::test]
async fn a_late_410_from_before_a_reactivation_does_not_stop_the_webhook_again() {
    let server = Server::start(PATIENT);
    let (gone, ops) = (Receiver::start().await, Receiver::start().await);
    gone.set_reply(Reply::SlowStatus(Duration::from_millis(1500), 410));
    follow(
        &server,
        &server.key,
        "webhook",
        json!(["deactivated"]),
        ops.url("/"),
    )
    .await;
    let details = json!({"object": "contact", "event": "created", "url": gone.url("/"),
                         "batch_size": 1});
    let webhook = server.ok("addWebhook", json!([server.key, details])).await;
    let event = json!({"object": "contact", "event": "created"});
    server.ok("addEvent", json!([server.key, event])).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let late = server.ok("addEvent", json!([server.key, event])).await;
    let late = server.delivery_of(&late).await;
    // The first answer stops the webhook; its owner turns it on again at once. The second
    // request went out before that, and its 410 says nothing of the webhook as it is now.
    eventually("the first 410 deactivates it", WAIT, || async {
        (webhook_state(&server, &webhook).await["is_active"] == false).then_some(())
    })
    .await;
    gone.set_reply(Reply::Status(200));
    set_active(&server, &webhook, true).await;
    let d = first_attempt_recorded(&server, &late).await;
    assert_eq!(d["last_status_code"], 410, "the late answer was a 410: {d}");
    let w = webhook_state(&server, &webhook).await;
    assert_eq!(w["is_active"], true, "{w}");
    assert_eq!(w["consecutive_failures"], 0, "{w}");
    assert_eq!(count_told(&server, "webhook", "deactivated").await, 1);
}

#[tokio::test]
async fn a_late_success_leaves_a_webhook_turned_off_meanwhile_alone() {
    let server = Server::start(PATIENT);
    let slow = Receiver::start().await;
    slow.set_reply(Reply::Slow(Duration::from_millis(1000)));
    let (webhook, delivery) = one_delivery(&server, slow.url("/")).await;
    eventually("the request is out", WAIT, || async {
        (!slow.received().is_empty()).then_some(())
    })
    .await;
    set_active(&server, &webhook, false).await;
    let d = first_attempt_recorded(&server, &delivery).await;
    assert_eq!(d["last_status_code"], 200, "{d}");
    // The answer settles its delivery, but says nothing of the webhook as it is now.
    let w = webhook_state(&server, &webhook).await;
    assert_eq!(w["last_success_time"], Value::Null, "{w}");
    assert_eq!(w["is_active"], false, "{w}");
}
