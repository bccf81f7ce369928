//! getDeliveryStats: attempts counted by what became of their deliveries, with their latency,
//! per webhook and for the account, in buckets from `since` to `until`; its limits and 310s.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Two retries after the first attempt, quickly.
const RETRY_TWICE: &[&str] = &[
    "--allow-private-targets",
    "--retry-schedule",
    "20ms,20ms",
    "--attempt-timeout",
    "2s",
    "--connect-timeout",
    "300ms",
];

/// A time on a whole hour (and so on a whole minute).
const HOUR: i64 = 1_764_000_000;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A webhook of list `list_id` only, one event per request.
async fn webhook_of_list(server: &Server, url: String, list_id: i64) -> Value {
    let details = json!({"object": "contact", "event": "created", "list_id": list_id,
                         "url": url, "batch_size": 1});
    server.ok("addWebhook", json!([server.key, details])).await
}

/// Publishes one event of list `list_id`; returns its only delivery.
async fn publish(server: &Server, list_id: i64) -> Value {
    let event = json!({"object": "contact", "event": "created", "list_id": list_id});
    let id = server.ok("addEvent", json!([server.key, event])).await;
    server.delivery_of(&id).await
}

/// (succeeded, retried, failed, attempts) summed over the buckets.
fn totals(buckets: &Value) -> (i64, i64, i64, i64) {
    (
        bucket_sum(buckets, "succeeded"),
        bucket_sum(buckets, "retried"),
        bucket_sum(buckets, "failed"),
        bucket_sum(buckets, "attempts"),
    )
}

/// The last ten minutes, minute by minute.
async fn recent(server: &Server, webhook_id: Value) -> Value {
    let since = now() - 600;
    server
        .ok(
            "getDeliveryStats",
            json!({"api_key": server.key, "webhook_id": webhook_id, "since": since, "interval": 60}),
        )
        .await
}

#[tokio::test]
async fn attempts_are_counted_by_outcome_with_their_latency_per_webhook_and_account() {
    let server = Server::start(RETRY_TWICE);
    let slow = Receiver::start().await;
    slow.set_reply(Reply::Slow(Duration::from_millis(150)));
    let good = webhook_of_list(&server, slow.url("/good"), 1).await;
    let down = format!("http://127.0.0.1:{}/", closed_port());
    let bad = webhook_of_list(&server, down, 2).await;
    for list_id in [1, 1, 2] {
        let delivery = publish(&server, list_id).await;
        let end = if list_id == 1 { "succeeded" } else { "failed" };
        server.delivery_with_status(&delivery, end).await;
    }

    let good_stats = recent(&server, good.clone()).await;
    assert_eq!(totals(&good_stats), (2, 0, 0, 2), "{good_stats}");
    for bucket in good_stats.as_array().unwrap() {
        if bucket["attempts"] == 0 {
            assert_eq!(
                (&bucket["p50_ms"], &bucket["p99_ms"]),
                (&Value::Null, &Value::Null)
            );
            continue;
        }
        let (p50, p99) = (bucket["p50_ms"].as_i64(), bucket["p99_ms"].as_i64());
        assert!(
            p50.is_some_and(|ms| (150..400).contains(&ms)),
            "a receiver answering after 150 ms: {bucket}"
        );
        assert!(p99 >= p50, "{bucket}");
    }
    // The first attempt and two retries failed: two were retried, the last one failed.
    assert_eq!(totals(&recent(&server, bad.clone()).await), (0, 2, 1, 3));
    assert_eq!(totals(&recent(&server, json!(0)).await), (2, 2, 1, 5));
    // The same attempts are counted by the hour (the default interval) as well.
    let by_hour = server.ok("getDeliveryStats", json!([server.key])).await;
    assert_eq!(totals(&by_hour), (2, 2, 1, 5));

    // A deleted webhook's history stays the account's; the webhook itself is gone.
    server.ok("deleteWebhook", json!([server.key, bad])).await;
    assert_eq!(totals(&recent(&server, json!(0)).await), (2, 2, 1, 5));
    let (code, _) = server
        .err("getDeliveryStats", json!([server.key, bad]))
        .await;
    assert_eq!(code, 350);
}

/// Many attempts of one webhook, sent side by side, are recorded together (in one transaction,
/// within a second or two): each still counts as an attempt.
#[tokio::test]
async fn attempts_recorded_together_each_count() {
    const EVENTS: i64 = 60;
    let server = Server::start(&["--allow-private-targets"]);
    let receiver = Receiver::start().await;
    let webhook = webhook_of_list(&server, receiver.url("/"), 1).await;
    let event = json!({"object": "contact", "event": "created", "list_id": 1});
    let events: Vec<Value> = (0..EVENTS).map(|_| event.clone()).collect();
    server.ok("addEvents", json!([server.key, events])).await;

    let counted = |webhook_id: Value| {
        let server = &server;
        async move {
            let stats = recent(server, webhook_id).await;
            let totals = totals(&stats);
            (totals == (EVENTS, 0, 0, EVENTS)).then_some(())
        }
    };
    let limit = Duration::from_secs(20);
    eventually("every attempt counted", limit, || counted(webhook.clone())).await;
    assert_eq!(
        totals(&recent(&server, json!(0)).await),
        (EVENTS, 0, 0, EVENTS)
    );
    assert_eq!(receiver.received().len() as i64, EVENTS);
}

#[tokio::test]
async fn buckets_run_from_since_on_its_minute_or_hour_to_until() {
    let server = Server::start(&[]);
    let stats = |since: i64, until: i64, interval: i64| {
        server.ok(
            "getDeliveryStats",
            json!([server.key, 0, since, until, interval]),
        )
    };
    let times = |buckets: &Value| -> Vec<i64> {
        buckets
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["time"].as_i64().unwrap())
            .collect()
    };

    // Minutes: since goes back to its minute; the last bucket holds until.
    let minutes = stats(HOUR + 30, HOUR + 330, 60).await;
    assert_eq!(
        times(&minutes),
        (0..6).map(|i| HOUR + 60 * i).collect::<Vec<_>>()
    );
    assert_eq!(
        minutes[0],
        json!({"time": HOUR, "succeeded": 0, "failed": 0, "retried": 0, "attempts": 0,
               "p50_ms": null, "p99_ms": null})
    );
    // Whole hours: since goes back to its hour.
    let two_hours = stats(HOUR + 1830, HOUR + 86_400, 7200).await;
    assert_eq!(times(&two_hours).len(), 12);
    assert_eq!(times(&two_hours)[0], HOUR);

    // 1000 buckets at most.
    assert_eq!(times(&stats(HOUR, HOUR + 120_000, 120).await).len(), 1000);
    let (code, data) = server
        .err(
            "getDeliveryStats",
            json!([server.key, 0, HOUR, HOUR + 120_001, 120]),
        )
        .await;
    assert_eq!(code, 310);
    assert_eq!(data[0]["field"], "interval", "{data}");
    assert!(
        data[0]["message"].as_str().unwrap().contains("1001"),
        "{data}"
    );

    // Defaults: the last 24 hours, hour by hour.
    let before = now();
    let day = times(&server.ok("getDeliveryStats", json!([server.key])).await);
    assert!(day.len() == 24 || day.len() == 25, "{day:?}");
    assert!(day[0] <= before - 86_400 && day[0] % 3600 == 0, "{day:?}");
    assert!(day.windows(2).all(|w| w[1] - w[0] == 3600), "{day:?}");
    assert!(*day.last().unwrap() <= now() && now() < day.last().unwrap() + 3600);
    // until alone: the 24 hours before it.
    let params = json!({"api_key": server.key, "until": HOUR + 86_400});
    let until_only = times(&server.ok("getDeliveryStats", params).await);
    assert_eq!(
        until_only,
        (0..24).map(|i| HOUR + 3600 * i).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn bad_params_are_310_naming_each_field_and_other_accounts_webhooks_350() {
    let server = Server::start(&[]);
    let standard = server.add_key("default", "standard");
    let fields = |data: &Value| -> Vec<String> {
        data.as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap().to_owned())
            .collect()
    };
    let cases = [
        (
            json!([server.key, -1, -5, null, 90]),
            vec!["webhook_id", "since", "interval"],
        ),
        (json!([server.key, 0, null, null, 30]), vec!["interval"]),
        (
            json!([server.key, 0, null, null, "hourly"]),
            vec!["interval"],
        ),
        (json!([server.key, 0, HOUR, HOUR]), vec!["until"]),
        (json!([server.key, 0, HOUR + 10, HOUR]), vec!["until"]),
        (
            json!({"api_key": server.key, "webhookId": 1}),
            vec!["webhookId"],
        ),
    ];
    for (params, expected) in cases {
        let (code, data) = server.err("getDeliveryStats", params.clone()).await;
        assert_eq!(code, 310, "{params}");
        assert_eq!(fields(&data), expected, "{params}: {data}");
    }
    let (code, _) = server
        .err("getDeliveryStats", json!([server.key, 999]))
        .await;
    assert_eq!(code, 350);
    let other = server.add_key("other", "full");
    let theirs = webhook_of_list(&server, "https://example.com/a".into(), 0).await;
    let (code, _) = server.err("getDeliveryStats", json!([other, theirs])).await;
    assert_eq!(code, 350);
    // A standard key reads statistics too.
    let read = server
        .ok("getDeliveryStats", json!([standard, theirs]))
        .await;
    assert!(read.as_array().is_some_and(|b| !b.is_empty()));
}
