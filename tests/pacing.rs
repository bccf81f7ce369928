//! How hard a webhook is pushed: its limit on requests in flight grows while the receiver
//! answers quickly and cleanly, and backs off when it answers 429 or slows down. Counted at the
//! receiver (requests in its hands when each arrives), never timed.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// A server whose failed deliveries wait an hour (each event is one request here) and whose
/// circuit stays closed, so only the adaptive limit shapes the traffic.
fn server() -> Server {
    Server::start(&[
        "--allow-private-targets",
        "--retry-schedule",
        "1h",
        "--circuit-threshold",
        "100000",
    ])
}

/// `count` events to the one webhook, one per request; waits until all were answered.
async fn burst(server: &Server, receiver: &Receiver, count: usize) -> Vec<Received> {
    let before = receiver.received().len();
    let events = vec![json!({"object": "contact", "event": "created"}); count];
    server.ok("addEvents", json!([server.key, events])).await;
    eventually("every request answered", WAIT, || async {
        let all = receiver.received();
        (all.len() >= before + count).then(|| all[before..].to_vec())
    })
    .await
}

/// A webhook of contacts `created` at `receiver`, one event per request; returns its id.
async fn one_request_per_event(server: &Server, receiver: &Receiver) -> serde_json::Value {
    let details = json!({"object": "contact", "event": "created", "url": receiver.url("/"),
        "batch_size": 1});
    server.ok("addWebhook", json!([server.key, details])).await
}

fn most_in_flight(requests: &[Received]) -> usize {
    requests.iter().map(|r| r.in_flight).max().unwrap_or(0)
}

#[tokio::test]
async fn a_quick_receiver_gets_more_and_a_429_gets_one_at_a_time() {
    let server = server();
    let receiver = Receiver::start().await;
    one_request_per_event(&server, &receiver).await;
    receiver.set_reply(Reply::Slow(Duration::from_millis(5)));
    let quick = burst(&server, &receiver, 600).await;
    assert!(
        most_in_flight(&quick) > 4,
        "a quick receiver is sent more than the 4 at a time it starts with: {}",
        most_in_flight(&quick)
    );

    receiver.set_reply(Reply::SlowStatus(Duration::from_millis(5), 429));
    let refused = burst(&server, &receiver, 300).await;
    // Halving once per round trip takes it from its ceiling to one within 127 requests.
    let settled = &refused[150..];
    assert_eq!(
        most_in_flight(settled),
        1,
        "after a run of 429s, one request at a time"
    );
}

#[tokio::test]
async fn a_receiver_that_cannot_keep_up_gets_fewer_requests_at_once() {
    let server = server();
    let receiver = Receiver::start().await;
    one_request_per_event(&server, &receiver).await;
    receiver.set_reply(Reply::Slow(Duration::from_millis(10)));
    let events = vec![json!({"object": "contact", "event": "created"}); 700];
    server.ok("addEvents", json!([server.key, events])).await;
    eventually("300 requests answered", WAIT, || async {
        (receiver.received().len() >= 300).then_some(())
    })
    .await;
    // In the middle of the stream it becomes a small app server: two workers, 20 ms a request,
    // the rest waiting their turn. Its answers now take longer the more it is sent.
    receiver.set_workers(Some(2));
    receiver.set_reply(Reply::Slow(Duration::from_millis(20)));
    let all = eventually("every request answered", WAIT, || async {
        let all = receiver.received();
        (all.len() >= 700).then_some(all)
    })
    .await;
    let before = most_in_flight(&all[..300]);
    assert!(before > 6, "it grew while the receiver was quick: {before}");
    // Answers take twice the unqueued time at about 4 in flight here; the limit oscillates
    // around that (one more per round trip, a quarter less once the recent average, which
    // lags, shows the slowdown). On a starved machine the receiver's own times swing too, so
    // the test asks where most requests were sent, not the single highest moment.
    let mut settled: Vec<usize> = all[550..].iter().map(|r| r.in_flight).collect();
    settled.sort_unstable();
    let settled = settled[settled.len() / 2];
    assert!(
        settled <= 6,
        "once requests queued there, a few at once (it had {before}), not a median of {settled}"
    );
}

#[tokio::test]
async fn a_receiver_whose_time_varies_by_itself_is_not_held_back() {
    let server = server();
    let receiver = Receiver::start().await;
    one_request_per_event(&server, &receiver).await;
    // One answer in ten after 1 ms, the rest after 30 ms, however many are in flight.
    receiver.set_reply(Reply::Varying(
        Duration::from_millis(1),
        Duration::from_millis(30),
        10,
    ));
    let answered = burst(&server, &receiver, 600).await;
    let most = most_in_flight(&answered[300..]);
    assert!(most > 8, "its requests are not cut back: {most} at most");
}

/// A webhook is given no more work than it may send at once (4 requests at first): the rest
/// stays in the queue, not in the server's memory, while the receiver holds what it has.
/// Counted by the deliveries leased, for a call that brings more than that and for one that
/// comes while the webhook has no room at all.
#[tokio::test]
async fn a_webhook_is_given_no_more_work_than_it_may_send_at_once() {
    let server = server();
    let receiver = Receiver::start().await;
    receiver.set_workers(Some(0));
    let hook = one_request_per_event(&server, &receiver).await;
    let event = json!({"object": "contact", "event": "created"});
    for call in [20, 5] {
        let events = vec![event.clone(); call];
        server.ok("addEvents", json!([server.key, events])).await;
        eventually("four requests held", WAIT, || async {
            (receiver.received().len() == 4).then_some(())
        })
        .await;
        assert_eq!(server.leased(&hook), 4, "after a call of {call} events");
    }
    receiver.let_through(1000);
    eventually("all delivered", WAIT, || async {
        (receiver.received().len() == 25).then_some(())
    })
    .await;
}
