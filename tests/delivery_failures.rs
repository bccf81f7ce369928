//! Every way a receiver can fail, each ending in the right retries, attempt records and words;
//! retryDelivery; the circuit breaker; 410 Gone; and the outbound guard refusing non-public
//! targets before any connection is made.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Two retries after the first attempt, quickly.
const RETRY_TWICE: &[&str] = &[
    "--allow-private-targets",
    "--retry-schedule",
    "20ms,20ms",
    "--attempt-timeout",
    "300ms",
    "--connect-timeout",
    "300ms",
];

/// One webhook at `url` and one event for it; returns (webhook id, delivery id).
async fn one_delivery(server: &Server, url: &str, list_id: i64) -> (Value, Value) {
    let details = json!({"object": "contact", "event": "created", "list_id": list_id, "url": url});
    let webhook = server.ok("addWebhook", json!([server.key, details])).await;
    let event = server
        .ok(
            "addEvent",
            json!([server.key, {"object": "contact", "event": "created", "list_id": list_id}]),
        )
        .await;
    (webhook, server.delivery_of(&event).await)
}

/// Waits until webhook `id`'s circuit is `state`; returns the webhook.
async fn circuit_becomes(server: &Server, id: &Value, state: &str) -> Value {
    eventually(&format!("the circuit is {state}"), WAIT, || async {
        let w = server.ok("getWebhookById", json!([server.key, id])).await;
        (w["circuit_state"] == state).then_some(w)
    })
    .await
}

#[tokio::test]
async fn each_failure_kind_is_retried_then_failed_with_its_reason_recorded() {
    let server = Server::start(RETRY_TWICE);
    let http_500 = Receiver::start().await;
    http_500.set_reply(Reply::Text(500, "database on fire".into()));
    let http_429 = Receiver::start().await;
    http_429.set_reply(Reply::WithHeaders(429, vec![("retry-after", "0".into())]));
    let redirect = Receiver::start().await;
    redirect.set_reply(Reply::WithHeaders(
        301,
        vec![("location", "http://127.0.0.1:1/elsewhere".into())],
    ));
    let slow = Receiver::start().await;
    slow.set_reply(Reply::Slow(Duration::from_secs(3)));
    let hangup = Receiver::start().await;
    hangup.set_reply(Reply::Hangup);
    let garbage = garbage_listener(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;

    // (url, status_code of each attempt, how the error starts)
    let cases: Vec<(String, Value, &str)> = vec![
        (http_500.url("/"), json!(500), "HTTP 500"),
        (http_429.url("/"), json!(429), "HTTP 429"),
        (
            redirect.url("/"),
            json!(301),
            "redirect not followed: HTTP 301 to http://127.0.0.1:1/elsewhere",
        ),
        (slow.url("/"), Value::Null, "timeout of 300ms exceeded"),
        (
            format!("http://127.0.0.1:{}/", closed_port()),
            Value::Null,
            "connection refused",
        ),
        (hangup.url("/"), Value::Null, "request failed"),
        (format!("http://{garbage}/"), Value::Null, "request failed"),
    ];
    let mut started = Vec::new();
    for (i, (url, _, _)) in cases.iter().enumerate() {
        started.push(one_delivery(&server, url, i as i64 + 1).await);
    }
    for ((url, status, reason), (webhook, delivery)) in cases.iter().zip(&started) {
        let d = server.delivery_with_status(delivery, "failed").await;
        assert_eq!(d["attempt_count"], 3, "{url}: {d}");
        assert_eq!(d["next_attempt_time"], Value::Null);
        let attempts = d["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 3, "{url}: {d}");
        for a in attempts {
            assert_eq!(&a["status_code"], status, "{url}: {a}");
            let error = a["error"].as_str().unwrap_or_else(|| panic!("{url}: {a}"));
            assert!(error.starts_with(reason), "{url}: {error:?}");
            assert!(a["time"].is_i64() && a["duration_ms"].is_i64(), "{a}");
        }
        assert_eq!(d["last_error"], attempts[2]["error"]);
        assert_eq!(&d["last_status_code"], status);
        let w = server
            .ok("getWebhookById", json!([server.key, webhook]))
            .await;
        assert_eq!(w["last_error"]["message"], attempts[2]["error"], "{w}");
        assert!(w["last_error"]["time"].is_i64());
        assert_eq!(w["consecutive_failures"], 3);
        assert_eq!(w["last_success_time"], Value::Null);
    }
    let body_500 = server
        .ok("getDeliveryById", json!([server.key, started[0].1]))
        .await;
    assert_eq!(body_500["attempts"][0]["response_body"], "database on fire");
    assert_eq!(http_500.received().len(), 3);
    assert_eq!(
        redirect.received().len(),
        3,
        "the redirect was never followed"
    );
    assert_eq!(
        server
            .ok(
                "countDeliveries",
                json!([server.key, [["status", "exactly", "failed"]]])
            )
            .await,
        cases.len()
    );
}

#[tokio::test]
async fn a_long_response_body_is_kept_to_4_kib() {
    let server = Server::start(RETRY_TWICE);
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Text(200, "é".repeat(5000)));
    let (_, delivery) = one_delivery(&server, &receiver.url("/"), 0).await;
    let d = server.delivery_with_status(&delivery, "succeeded").await;
    let body = d["attempts"][0]["response_body"].as_str().unwrap();
    // 4096 bytes of two-byte characters: 2048 of them, none split.
    assert_eq!(body.chars().filter(|c| *c == 'é').count(), 2048);
}

#[tokio::test]
async fn retry_delivery_queues_a_failed_delivery_again() {
    let server = Server::start(RETRY_TWICE);
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Status(503));
    let (webhook, delivery) = one_delivery(&server, &receiver.url("/"), 0).await;
    server.delivery_with_status(&delivery, "failed").await;

    let standard = server.add_key("default", "standard");
    assert_eq!(
        server
            .err("retryDelivery", json!([standard, delivery]))
            .await
            .0,
        321
    );
    assert_eq!(
        server
            .err("retryDelivery", json!([server.key, 999]))
            .await
            .0,
        353
    );
    let other = server.add_key("other", "full");
    assert_eq!(
        server
            .err("retryDelivery", json!([other, delivery]))
            .await
            .0,
        353
    );

    receiver.set_reply(Reply::Status(204));
    assert_eq!(
        server
            .ok("retryDelivery", json!([server.key, delivery]))
            .await,
        true
    );
    let d = server.delivery_with_status(&delivery, "succeeded").await;
    assert_eq!(d["attempt_count"], 4);
    assert_eq!(d["last_status_code"], 204);
    assert_eq!(d["last_error"], Value::Null);
    let w = server
        .ok("getWebhookById", json!([server.key, webhook]))
        .await;
    assert_eq!(w["consecutive_failures"], 0);
    assert!(w["last_success_time"].is_i64());
    // Only failed or cancelled deliveries can be retried.
    let (code, data) = server
        .err("retryDelivery", json!([server.key, delivery]))
        .await;
    assert_eq!(code, 310);
    assert_eq!(data[0]["field"], "delivery_id");
}

#[tokio::test]
async fn the_circuit_opens_after_consecutive_failures_and_a_probe_closes_it() {
    let server = Server::start(&[
        "--allow-private-targets",
        "--retry-schedule",
        "10ms,10ms,10ms,10ms,10ms,10ms,10ms,10ms,10ms,10ms",
        "--circuit-threshold",
        "3",
        "--circuit-probe-interval",
        "300ms",
    ]);
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Status(500));
    let (webhook, delivery) = one_delivery(&server, &receiver.url("/"), 0).await;
    let open = circuit_becomes(&server, &webhook, "open").await;
    assert!(
        open["consecutive_failures"].as_i64().unwrap() >= 3,
        "{open}"
    );
    receiver.set_reply(Reply::Status(200));
    let closed = circuit_becomes(&server, &webhook, "closed").await;
    assert_eq!(closed["consecutive_failures"], 0);
    server.delivery_with_status(&delivery, "succeeded").await;
}

#[tokio::test]
async fn gone_deactivates_the_webhook() {
    let server = Server::start(RETRY_TWICE);
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Status(410));
    let (webhook, delivery) = one_delivery(&server, &receiver.url("/"), 0).await;
    let w = eventually("the webhook is deactivated", WAIT, || async {
        let w = server
            .ok("getWebhookById", json!([server.key, webhook]))
            .await;
        (w["is_active"] == false).then_some(w)
    })
    .await;
    let why = w["last_error"]["message"].as_str().unwrap();
    assert!(why.contains("410"), "{why}");
    let d = server
        .ok("getDeliveryById", json!([server.key, delivery]))
        .await;
    assert_ne!(d["status"], "pending", "{d}");
    assert_eq!(d["attempt_count"], 1, "no retries after 410");
    let later = server
        .ok(
            "addEvent",
            json!([server.key, {"object": "contact", "event": "created"}]),
        )
        .await;
    let event = server.ok("getEventById", json!([server.key, later])).await;
    assert_eq!(event["delivery_count"], 0);
    assert_eq!(receiver.received().len(), 1);
}

/// A request already out when its webhook is deactivated or deleted is not called back: the
/// receiver that answers 2xx has the deliveries, which become `succeeded`, not `cancelled`
/// (which `retryDeliveries` could send again).
#[tokio::test]
async fn deliveries_the_receiver_took_after_a_deactivation_succeed() {
    for change in ["deactivate", "delete"] {
        let server = Server::start(&["--allow-private-targets", "--attempt-timeout", "10s"]);
        let receiver = Receiver::start().await;
        receiver.set_reply(Reply::Slow(Duration::from_millis(1500)));
        let (webhook, events) = server.three_requests_out(&receiver).await;
        match change {
            "deactivate" => {
                let off = json!([server.key, webhook, {"is_active": false}]);
                server.ok("editWebhook", off).await
            }
            _ => {
                server
                    .ok("deleteWebhook", json!([server.key, webhook]))
                    .await
            }
        };
        for event in events.as_array().unwrap() {
            let delivery = server.delivery_of(event).await;
            let d = eventually("the answer recorded", WAIT, || async {
                let d = server
                    .ok("getDeliveryById", json!([server.key, delivery]))
                    .await;
                (d["attempt_count"] == 1).then_some(d)
            })
            .await;
            assert_eq!(d["status"], "succeeded", "{change}: {d}");
        }
    }
}

/// Batches waiting in the engine for their turn when the receiver answers 410 Gone are not
/// sent: the answer turned the webhook off and cancelled them. The slot a waiting batch gets
/// may be the one the 410's request gave back (one request out at a time), or one another
/// webhook's request gave back while the 410 was being recorded (two at a time).
#[tokio::test]
async fn batches_waiting_when_a_410_comes_are_not_sent() {
    for freed_by_another in [false, true] {
        let at_once = if freed_by_another { "2" } else { "1" };
        let server = Server::start(&["--allow-private-targets", "--delivery-concurrency", at_once]);
        let (gone_receiver, other_receiver) = (Receiver::start().await, Receiver::start().await);
        gone_receiver.set_workers(Some(0));
        gone_receiver.set_reply(Reply::Status(410));
        let gone = json!({"object": "contact", "event": "created",
            "url": gone_receiver.url("/"), "batch_size": 1});
        let gone = server.ok("addWebhook", json!([server.key, gone])).await;
        let other = json!({"object": "contact", "event": "updated",
            "url": other_receiver.url("/")});
        server.ok("addWebhook", json!([server.key, other])).await;
        let updated = json!({"object": "contact", "event": "updated"});
        if freed_by_another {
            // Holds the other of the two slots until the 410 has come.
            other_receiver.set_workers(Some(0));
            server.ok("addEvent", json!([server.key, updated])).await;
            eventually("the other webhook's request held", WAIT, || async {
                (other_receiver.received().len() == 1).then_some(())
            })
            .await;
        }
        let created = json!({"object": "contact", "event": "created"});
        let three = json!([server.key, [created, created, created]]);
        let events = server.ok("addEvents", three).await;
        eventually("the first request held", WAIT, || async {
            (gone_receiver.received().len() == 1).then_some(())
        })
        .await;
        eventually("all three in the engine's hands", WAIT, || async {
            (server.leased(&gone) == 3).then_some(())
        })
        .await;
        gone_receiver.let_through(100);
        // The other webhook's slot is given back once the 410 has come (its attempt is logged
        // as the record begins): a batch that took the slot before that could not have known.
        // (Let through together, the two answers could come in either order.)
        eventually("the 410 heard", WAIT, || async {
            server.stderr().contains("status=410").then_some(())
        })
        .await;
        other_receiver.let_through(100);
        // Its turn comes after the two waiting batches': when it is sent, they have had theirs.
        server.ok("addEvent", json!([server.key, updated])).await;
        let expected = if freed_by_another { 2 } else { 1 };
        eventually("the other webhook's request after them", WAIT, || async {
            (other_receiver.received().len() == expected).then_some(())
        })
        .await;
        let to_gone = gone_receiver.received().len();
        assert_eq!(
            to_gone, 1,
            "only the request that got the 410 ({at_once} at once)"
        );
        let mut statuses = Vec::new();
        for event in events.as_array().unwrap() {
            let delivery = server.delivery_of(event).await;
            let d = server
                .ok("getDeliveryById", json!([server.key, delivery]))
                .await;
            statuses.push((d["status"].clone(), d["attempt_count"].clone()));
        }
        statuses.sort_by_key(|s| s.0.to_string());
        let cancelled = (json!("cancelled"), json!(0));
        let failed = (json!("failed"), json!(1));
        assert_eq!(statuses, [cancelled.clone(), cancelled, failed]);
    }
}

/// A probe that fails after the circuit has been open longer than `--disable-after` turns the
/// webhook off; the next probe, waiting in the engine for its turn, is not sent.
#[tokio::test]
async fn the_next_probe_waiting_when_a_webhook_is_disabled_is_not_sent() {
    let server = Server::start(&[
        "--allow-private-targets",
        "--delivery-concurrency",
        "1",
        "--circuit-threshold",
        "1",
        "--circuit-probe-interval",
        "100ms",
        "--disable-after",
        "1s",
        "--retry-schedule",
        "10s",
    ]);
    let (down, other) = (Receiver::start().await, Receiver::start().await);
    down.set_workers(Some(0));
    down.set_reply(Reply::Status(500));
    other.set_workers(Some(0));
    let hook = |event: &str, receiver: &Receiver| json!({"object": "contact", "event": event, "url": receiver.url("/"), "batch_size": 1});
    let failing = server
        .ok("addWebhook", json!([server.key, hook("created", &down)]))
        .await;
    let busy = server
        .ok("addWebhook", json!([server.key, hook("updated", &other)]))
        .await;
    let publish = |event: &'static str| {
        let server = &server;
        async move {
            let event = json!({"object": "contact", "event": event});
            server.ok("addEvent", json!([server.key, event])).await
        }
    };
    // The first attempt fails and opens the circuit; meanwhile the other webhook's request
    // takes the one slot, and keeps it while the circuit stays open past --disable-after.
    publish("created").await;
    eventually("the first attempt out", WAIT, || async {
        (down.received().len() == 1).then_some(())
    })
    .await;
    publish("updated").await;
    eventually("the other request waiting", WAIT, || async {
        (server.leased(&busy) == 1).then_some(())
    })
    .await;
    down.let_through(1);
    circuit_becomes(&server, &failing, "open").await;
    eventually("the other request held", WAIT, || async {
        (other.received().len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await; // open for more than 1 s
                                                           // Two probes wait for the slot, the other webhook's second request between them.
    let probe = publish("created").await;
    eventually("a probe waiting", WAIT, || async {
        (server.leased(&failing) == 1).then_some(())
    })
    .await;
    publish("updated").await;
    eventually("the other's second request waiting", WAIT, || async {
        (server.leased(&busy) == 2).then_some(())
    })
    .await;
    let next_probe = publish("created").await;
    eventually("the next probe waiting", WAIT, || async {
        (server.leased(&failing) == 2).then_some(())
    })
    .await;
    other.let_through(100);
    down.let_through(100);
    // Its turn comes after the next probe's: when it is sent, that one has had its turn.
    publish("updated").await;
    eventually("the other's third request", WAIT, || async {
        (other.received().len() == 3).then_some(())
    })
    .await;
    let w = server
        .ok("getWebhookById", json!([server.key, failing]))
        .await;
    assert_eq!(w["is_active"], false, "{w}");
    assert_eq!(down.received().len(), 2, "the first attempt and one probe");
    for (event, status) in [(probe, "cancelled"), (next_probe, "cancelled")] {
        let delivery = server.delivery_of(&event).await;
        let d = server
            .ok("getDeliveryById", json!([server.key, delivery]))
            .await;
        assert_eq!(d["status"], status, "{d}");
    }
}

#[tokio::test]
async fn deliveries_cancelled_in_flight_still_count_their_attempt() {
    let server = Server::start(RETRY_TWICE);
    let receiver = Receiver::start().await;
    // Three one-item requests in flight at once, each answered 410: the first answer
    // deactivates the webhook and cancels the other two while they are still on the wire.
    receiver.set_reply(Reply::SlowStatus(Duration::from_millis(100), 410));
    server.three_requests_out(&receiver).await;
    let deliveries = eventually("every attempt recorded", WAIT, || async {
        let all = server.ok("searchDeliveries", json!([server.key])).await;
        let recorded = all
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] != "pending");
        let mut full = Vec::new();
        for d in all.as_array().unwrap() {
            full.push(
                server
                    .ok("getDeliveryById", json!([server.key, d["id"]]))
                    .await,
            );
        }
        let attempts: usize = full
            .iter()
            .map(|d| d["attempts"].as_array().unwrap().len())
            .sum();
        (recorded && attempts == 3).then_some(full)
    })
    .await;
    let cancelled = deliveries
        .iter()
        .filter(|d| d["status"] == "cancelled")
        .count();
    assert!(
        cancelled > 0,
        "some were cancelled in flight: {deliveries:?}"
    );
    for d in &deliveries {
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
        assert_eq!(
            d["attempt_count"], 1,
            "the attempt it lists is counted: {d}"
        );
        assert!(d["last_attempt_time"].is_i64(), "{d}");
    }
}

#[tokio::test]
async fn retry_deliveries_replays_the_failed_ones_matching_the_criteria() {
    let server = Server::start(RETRY_TWICE);
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Status(500));
    let add = |path: &str| {
        json!([server.key, {"object": "contact", "event": "created", "url": receiver.url(path),
            "batch_size": 1}])
    };
    let first = server.ok("addWebhook", add("/first")).await;
    let second = server.ok("addWebhook", add("/second")).await;
    let event = json!({"object": "contact", "event": "created"});
    server
        .ok("addEvents", json!([server.key, [event, event, event]]))
        .await;
    let failed = json!([["status", "exactly", "failed"]]);
    eventually("all six deliveries failed", WAIT, || async {
        let n = server
            .ok("countDeliveries", json!([server.key, failed]))
            .await;
        (n == 6).then_some(())
    })
    .await;
    // The second webhook is switched off: its failed deliveries are skipped.
    server
        .ok(
            "editWebhook",
            json!([server.key, second, {"is_active": false}]),
        )
        .await;
    receiver.set_reply(Reply::Status(200));
    let none = json!([["webhook_id", "exactly", 999]]);
    assert_eq!(
        server
            .ok("retryDeliveries", json!([server.key, none]))
            .await,
        0
    );
    let queued = server
        .ok(
            "retryDeliveries",
            json!([server.key, [["webhook_id", "exactly", first]]]),
        )
        .await;
    assert_eq!(queued, 3);
    let of_first = json!([
        ["webhook_id", "exactly", first],
        ["status", "exactly", "succeeded"]
    ]);
    eventually("the three replayed deliveries succeed", WAIT, || async {
        let n = server
            .ok("countDeliveries", json!([server.key, of_first]))
            .await;
        (n == 3).then_some(())
    })
    .await;
    let n = server
        .ok("countDeliveries", json!([server.key, failed]))
        .await;
    assert_eq!(n, 3, "the inactive webhook's stay failed");
    // Not for standard keys, and bad criteria are 311 as in any search.
    let standard = server.add_key("default", "standard");
    let (code, _) = server.err("retryDeliveries", json!([standard, []])).await;
    assert_eq!(code, 321);
    let (code, _) = server
        .err(
            "retryDeliveries",
            json!([server.key, [["nope", "exactly", 1]]]),
        )
        .await;
    assert_eq!(code, 311);
}

#[tokio::test]
async fn retry_deliveries_takes_cancelled_ones_when_the_criteria_say_so() {
    // A failed attempt waits an hour for its retry: the delivery stays pending until the
    // webhook is switched off, which cancels it.
    let server = Server::start(&["--allow-private-targets", "--retry-schedule", "1h"]);
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Status(500));
    let details = json!({"object": "contact", "event": "created", "url": receiver.url("/")});
    let webhook = server.ok("addWebhook", json!([server.key, details])).await;
    let event = json!({"object": "contact", "event": "created"});
    let id = server.ok("addEvent", json!([server.key, event])).await;
    let delivery = server.delivery_of(&id).await;
    eventually("the first attempt", WAIT, || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    let off = json!([server.key, webhook, {"is_active": false}]);
    server.ok("editWebhook", off).await;
    server.delivery_with_status(&delivery, "cancelled").await;
    let on = json!([server.key, webhook, {"is_active": true}]);
    server.ok("editWebhook", on).await;
    receiver.set_reply(Reply::Status(200));
    // Without a status in the criteria only failed ones are taken.
    assert_eq!(
        server.ok("retryDeliveries", json!([server.key, []])).await,
        0
    );
    let cancelled = json!([["status", "exactly", "cancelled"]]);
    let queued = server
        .ok("retryDeliveries", json!([server.key, cancelled]))
        .await;
    assert_eq!(queued, 1);
    server.delivery_with_status(&delivery, "succeeded").await;
}

#[tokio::test]
async fn a_late_410_from_the_old_url_does_not_stop_a_moved_webhook() {
    let server = Server::start(RETRY_TWICE);
    let old = Receiver::start().await;
    let new = Receiver::start().await;
    old.set_reply(Reply::SlowStatus(Duration::from_millis(200), 410));
    let details = json!({"object": "contact", "event": "created", "url": old.url("/"),
        "batch_size": 1});
    let webhook = server.ok("addWebhook", json!([server.key, details])).await;
    let event = json!({"object": "contact", "event": "created"});
    let id = server.ok("addEvent", json!([server.key, event])).await;
    eventually("the request reaches the old url", WAIT, || async {
        (!old.received().is_empty()).then_some(())
    })
    .await;
    // Moved (and said to be active) while the old url is still making up its answer.
    server
        .ok(
            "editWebhook",
            json!([server.key, webhook, {"url": new.url("/"), "is_active": true}]),
        )
        .await;
    let delivery = server.delivery_of(&id).await;
    server.delivery_with_status(&delivery, "succeeded").await;
    assert_eq!(new.items().len(), 1, "the event reached the new url");
    let w = server
        .ok("getWebhookById", json!([server.key, webhook]))
        .await;
    assert_eq!(w["is_active"], true, "{w}");
    assert_eq!(w["consecutive_failures"], 0, "{w}");
}

#[tokio::test]
async fn a_closed_circuit_releases_its_backlog_at_once() {
    // The circuit opens on the first failure, with its first probe 1 s later. The server then
    // restarts with a probe interval of an hour: were the backlog to wait for the probe after
    // the one that succeeds, it would wait that hour.
    let mut args = RETRY_TWICE.to_vec();
    args.extend(["--circuit-threshold", "1", "--circuit-probe-interval", "1s"]);
    let mut server = Server::start(&args);
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Status(500));
    let details = json!({"object": "contact", "event": "created", "url": receiver.url("/"),
        "batch_size": 1});
    let webhook = server.ok("addWebhook", json!([server.key, details])).await;
    let event = json!({"object": "contact", "event": "created"});
    server.ok("addEvent", json!([server.key, event])).await;
    circuit_becomes(&server, &webhook, "open").await;
    server
        .ok(
            "addEvents",
            json!([server.key, [event, event, event, event]]),
        )
        .await;
    let mut args = RETRY_TWICE.to_vec();
    args.extend(["--circuit-threshold", "1", "--circuit-probe-interval", "1h"]);
    server.restart_with(&args);
    receiver.set_reply(Reply::Status(200));
    eventually(
        "the probe and then the whole backlog arrive",
        WAIT,
        || async { (receiver.items().len() >= 5).then_some(()) },
    )
    .await;
    let all = server.ok("searchDeliveries", json!([server.key])).await;
    for d in all.as_array().unwrap() {
        server.delivery_with_status(&d["id"], "succeeded").await;
    }
}

/// Events published while a circuit is open wait for its probe, whichever way their deliveries
/// reach the engine (on PostgreSQL the node that publishes takes work for itself as it queues
/// it): none goes out beside the same events' deliveries to a healthy webhook.
#[tokio::test]
async fn events_published_while_a_circuit_is_open_wait_for_its_probe() {
    let mut args = RETRY_TWICE.to_vec();
    args.extend(["--circuit-threshold", "1", "--circuit-probe-interval", "1h"]);
    let server = Server::start(&args);
    let (failing, healthy) = (Receiver::start().await, Receiver::start().await);
    failing.set_reply(Reply::Status(500));
    let (broken, _) = one_delivery(&server, &failing.url("/"), 0).await;
    circuit_becomes(&server, &broken, "open").await;
    let details = json!({"object": "contact", "event": "created", "url": healthy.url("/")});
    server.ok("addWebhook", json!([server.key, details])).await;
    let event = json!({"object": "contact", "event": "created"});
    let events = vec![event; 5];
    server.ok("addEvents", json!([server.key, events])).await;
    eventually(
        "the healthy webhook's deliveries recorded",
        WAIT,
        || async {
            let succeeded = server
                .ok(
                    "countDeliveries",
                    json!([server.key, [["status", "exactly", "succeeded"]]]),
                )
                .await;
            (succeeded == 5).then_some(())
        },
    )
    .await;
    assert_eq!(healthy.items().len(), 5);
    assert_eq!(
        failing.received().len(),
        1,
        "only the attempt that opened the circuit"
    );
}

/// Without --allow-private-targets every non-public target is refused before a connection is
/// made: loopback receivers that really listen see nothing.
#[tokio::test]
async fn the_guard_refuses_non_public_targets_without_connecting() {
    let server = Server::start(&["--retry-schedule", "1h"]);
    let receiver = Receiver::start().await;
    let port = receiver.addr.port();
    let targets = [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://2130706433:{port}/"), // 127.0.0.1 as one decimal number
        "http://10.0.0.1/".into(),
        "http://172.16.5.4/".into(),
        "http://192.168.1.1/".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://100.64.0.1/".into(),
        "http://0.0.0.0/".into(),
        "http://224.0.0.1/".into(),
        "http://[fc00::1]/".into(),
        "http://[fe80::1]/".into(),
        "http://[::ffff:10.0.0.1]/".into(),
        // IPv6 spellings that carry an IPv4 address a tunnel or translator delivers to.
        format!("http://[::127.0.0.1]:{port}/"), // IPv4-compatible
        "http://[::10.0.0.1]/".into(),
        format!("http://[2002:7f00:1::]:{port}/"), // 6to4 of 127.0.0.1
        "http://[2002:a9fe:a9fe::1]/".into(),      // 6to4 of 169.254.169.254
        // Teredo: server 127.0.0.1; then server 8.8.8.8 with client 10.0.0.1 (inverted).
        format!("http://[2001:0:7f00:1::f7f7:f7f7]:{port}/"),
        "http://[2001:0:808:808::f5ff:fffe]/".into(),
        format!("http://[64:ff9b::127.0.0.1]:{port}/"), // NAT64
        "http://[64:ff9b:1::a9fe:a9fe]/".into(),        // local-use NAT64
        "https://service.test/".into(),
    ];
    let mut deliveries = Vec::new();
    for (i, url) in targets.iter().enumerate() {
        let details =
            json!({"object": "contact", "event": "created", "list_id": i + 1, "url": url});
        let id = server.ok("addWebhook", json!([server.key, details])).await;
        deliveries.push(server.ok("testWebhook", json!([server.key, id])).await);
    }
    for (url, delivery) in targets.iter().zip(&deliveries) {
        let d = eventually(&format!("an attempt to {url}"), WAIT, || async {
            let d = server
                .ok("getDeliveryById", json!([server.key, delivery]))
                .await;
            (d["attempt_count"] == 1).then_some(d)
        })
        .await;
        let error = d["attempts"][0]["error"].as_str().unwrap();
        assert!(error.starts_with("refused: "), "{url}: {error}");
        assert_eq!(d["attempts"][0]["status_code"], Value::Null);
    }
    assert!(
        receiver.received().is_empty(),
        "the guard let a request through"
    );
}
