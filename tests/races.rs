//! Calls racing: every acknowledged change is still in place afterwards (no lost updates), and
//! calls published at once each get their own events. Each pair of edits runs many times, so
//! an edit that reads outside its write transaction loses one of the two in a good share of
//! the trials.

mod common;

use common::{eventually, webhook, Receiver, Server};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const TRIALS: usize = 60;
const WAIT: Duration = Duration::from_secs(60);

async fn new_webhook(server: &Server, url: &str) -> Value {
    server
        .ok("addWebhook", json!([server.key, webhook(url)]))
        .await
}

async fn get(server: &Server, id: &Value) -> Value {
    server.ok("getWebhookById", json!([server.key, id])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_never_undoes_a_rotation() {
    let server = Server::start(&["--allow-private-targets"]);
    let receiver = Receiver::start().await;
    let id = new_webhook(&server, &receiver.url("/")).await;
    for trial in 0..TRIALS {
        let name = format!("name {trial}");
        let (_, secret) = tokio::join!(
            server.ok(
                "editWebhook",
                json!([server.key, id, {"name": name.clone()}])
            ),
            server.ok("rotateWebhookSecret", json!([server.key, id])),
        );
        let now = get(&server, &id).await;
        assert_eq!(now["secret"], secret, "trial {trial}: rotation lost");
        assert_eq!(now["name"], json!(name), "trial {trial}: edit lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_edits_of_different_fields_both_stay() {
    let server = Server::start(&["--allow-private-targets"]);
    let receiver = Receiver::start().await;
    let id = new_webhook(&server, &receiver.url("/")).await;
    for trial in 0..TRIALS {
        let name = format!("name {trial}");
        let description = format!("description {trial}");
        tokio::join!(
            server.ok(
                "editWebhook",
                json!([server.key, id, {"name": name.clone()}])
            ),
            server.ok(
                "editWebhook",
                json!([server.key, id, {"description": description.clone()}])
            ),
        );
        let now = get(&server, &id).await;
        assert_eq!(now["name"], json!(name), "trial {trial}");
        assert_eq!(now["description"], json!(description), "trial {trial}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deactivation_survives_a_url_edit() {
    let server = Server::start(&["--allow-private-targets"]);
    let receiver = Receiver::start().await;
    for trial in 0..TRIALS {
        let id = new_webhook(&server, &receiver.url(&format!("/{trial}"))).await;
        let url = receiver.url(&format!("/{trial}/moved"));
        tokio::join!(
            server.ok("editWebhook", json!([server.key, id, {"is_active": false}])),
            server.ok("editWebhook", json!([server.key, id, {"url": url.clone()}])),
        );
        let now = get(&server, &id).await;
        assert_eq!(now["is_active"], false, "trial {trial}: deactivation lost");
        assert_eq!(now["url"], json!(url), "trial {trial}: url edit lost");
    }
}

/// Calls that publish at the same moment may be written together (on PostgreSQL they are
/// gathered into one statement): each call still gets the ids of its own events, in its own
/// order, and each event belongs to its own account and reaches that account's webhook only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_published_at_once_each_get_their_own_events() {
    const CALLS: usize = 120;
    let server = Arc::new(Server::start(&[
        "--allow-private-targets",
        "--max-concurrent-calls",
        "1000",
    ]));
    let receiver = Receiver::start().await;
    let keys = [
        server.key.clone(),
        server.add_key("second", "full"),
        server.add_key("third", "full"),
    ];
    let mut hooks = Vec::new();
    for (account, key) in keys.iter().enumerate() {
        let url = receiver.url(&format!("/{account}"));
        hooks.push(server.ok("addWebhook", json!([key, webhook(&url)])).await);
    }
    let mut calls = tokio::task::JoinSet::new();
    for call in 0..CALLS {
        let (server, account) = (server.clone(), call % keys.len());
        let key = keys[account].clone();
        calls.spawn(async move {
            // One event by addEvent, or several by addEvents.
            let events: Vec<Value> = (0..1 + call % 4)
                .map(|nth| {
                    json!({"object": "contact", "event": "subscribed",
                           "data": {"call": call, "nth": nth}})
                })
                .collect();
            let ids = match events.len() {
                1 => json!([server.ok("addEvent", json!([key, events[0]])).await]),
                _ => server.ok("addEvents", json!([key, events])).await,
            };
            (account, call, ids.as_array().cloned().expect("ids"))
        });
    }
    let mut account_of = HashMap::new();
    while let Some(done) = calls.join_next().await {
        let (account, call, ids) = done.expect("call");
        assert_eq!(ids.len(), 1 + call % 4, "call {call}: {ids:?}");
        for (nth, id) in ids.iter().enumerate() {
            let event = server.ok("getEventById", json!([keys[account], id])).await;
            assert_eq!(
                event["data"],
                json!({"call": call, "nth": nth}),
                "call {call}"
            );
            let other = &keys[(account + 1) % keys.len()];
            let (code, _) = server.err("getEventById", json!([other, id])).await;
            assert_eq!(code, 352, "call {call}: event {id} seen by another account");
            account_of.insert(id.as_i64().unwrap(), account);
        }
    }
    let expected = account_of.len();
    let received = eventually(&format!("{expected} deliveries"), WAIT, || async {
        let received = receiver.received();
        let items: usize = received.iter().map(|r| r.items().len()).sum();
        (items >= expected).then_some(received)
    })
    .await;
    let mut delivered = HashSet::new();
    for request in received {
        for item in request.items() {
            let id = item["id"].as_i64().unwrap();
            let account = account_of[&id];
            assert_eq!(request.path, format!("/{account}"), "event {id}");
            assert_eq!(item["webhook_id"], hooks[account], "event {id}");
            delivered.insert(id);
        }
    }
    assert_eq!(delivered.len(), expected, "every event delivered");
}

/// Webhooks turned off and on again while their deliveries go out and are recorded: every
/// edit succeeds, and no two transactions wait for each other in a cycle. (On PostgreSQL such
/// a cycle is broken after a second by failing one of them: the edit, answered 100, or the
/// record, which the server runs again and logs.) An edit takes a webhook's row and then
/// cancels its pending deliveries; a record must take rows in the same orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_turned_off_and_on_while_delivering_wait_in_no_cycle() {
    const WEBHOOKS: usize = 6;
    const TOGGLES: u64 = 40;
    let filter = "info,hookrpc::store::postgres=debug";
    let server = Server::start_logging(&["--allow-private-targets"], filter);
    let receiver = Receiver::start().await;
    let mut ids = Vec::new();
    for i in 0..WEBHOOKS {
        let mut details = webhook(&receiver.url(&format!("/{i}")));
        details["batch_size"] = json!(1);
        ids.push(server.ok("addWebhook", json!([server.key, details])).await);
    }
    let toggled = std::sync::atomic::AtomicUsize::new(0);
    let toggle = |id: Value, seed: u64| {
        let (server, toggled) = (&server, &toggled);
        async move {
            for n in 0..TOGGLES {
                for active in [false, true] {
                    let pause = (seed * 7 + n * 13) % 40;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    let edit = json!([server.key, id, {"is_active": active}]);
                    server.ok("editWebhook", edit).await;
                }
            }
            toggled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let publish = async {
        let event = json!({"object": "contact", "event": "subscribed"});
        while toggled.load(std::sync::atomic::Ordering::SeqCst) < WEBHOOKS {
            let events: Vec<Value> = (0..10).map(|_| event.clone()).collect();
            server.ok("addEvents", json!([server.key, events])).await;
            server.ok("addEvent", json!([server.key, event])).await;
        }
    };
    let toggles = ids
        .iter()
        .zip(0..)
        .map(|(id, seed)| toggle(id.clone(), seed));
    tokio::join!(futures_util::future::join_all(toggles), publish);
    let log = server.stderr();
    let cycles: Vec<&str> = log.lines().filter(|l| l.contains("deadlock")).collect();
    assert!(
        cycles.is_empty(),
        "transactions waited in a cycle: {cycles:?}"
    );
}

/// A batch the engine took before its webhook was edited, and holds while it waits for a slot,
/// is not sent as it was read. Turned off (and on again), the webhook's deliveries it held stay
/// cancelled and unsent; given a new url, they go to the new one; given a new secret, it signs
/// them. An edit that changes nothing the receiver sees (a description) leaves it in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_waiting_for_a_slot_follows_an_edit_of_its_webhook() {
    for change in [
        Change::OffAndOn,
        Change::NewUrl,
        Change::NewSecret,
        Change::Description,
    ] {
        let server = Server::start(&ONE_REQUEST_AT_A_TIME);
        edit_while_a_batch_waits(change, &server, &server).await;
    }
}

/// The same on PostgreSQL, with the edit made on another node than the one holding the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_waiting_for_a_slot_follows_an_edit_made_on_another_node() {
    if common::postgres_admin_url().is_none() {
        eprintln!(
            "skipped: a cluster needs PostgreSQL (set HOOKRPC_TEST_DB, or run scripts/test-both)"
        );
        return;
    }
    for change in [
        Change::OffAndOn,
        Change::NewUrl,
        Change::NewSecret,
        Change::Description,
    ] {
        let filter = "info,hookrpc::store::postgres=debug";
        let server = Server::start_logging(&ONE_REQUEST_AT_A_TIME, filter);
        let editor = Server::join(&server, &["--delivery-concurrency", "0"]);
        edit_while_a_batch_waits(change, &server, &editor).await;
    }
}

/// While the receiver holds the first request, the next waits in the engine for a slot.
const ONE_REQUEST_AT_A_TIME: [&str; 3] = ["--allow-private-targets", "--delivery-concurrency", "1"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    OffAndOn,
    NewUrl,
    NewSecret,
    Description,
}

/// `server` holds a batch of webhook "edited" waiting for a slot, `editor` (the same node or
/// another) makes `change` to that webhook, and then the batch's turn comes.
async fn edit_while_a_batch_waits(change: Change, server: &Server, editor: &Server) {
    let receiver = Receiver::start().await;
    receiver.set_workers(Some(0));
    let busy = json!({"object": "contact", "event": "created", "url": receiver.url("/busy")});
    server.ok("addWebhook", json!([server.key, busy])).await;
    let edited = json!({"object": "contact", "event": "updated", "url": receiver.url("/old")});
    let edited = server.ok("addWebhook", json!([server.key, edited])).await;
    let created = json!({"object": "contact", "event": "created"});
    server.ok("addEvent", json!([server.key, created])).await;
    eventually("the first request held", WAIT, || async {
        (receiver.received().len() == 1).then_some(())
    })
    .await;
    let updated = json!({"object": "contact", "event": "updated"});
    let waiting = server.ok("addEvent", json!([server.key, updated])).await;
    eventually(
        "the second delivery in the engine's hands",
        WAIT,
        || async { (server.leased(&edited) == 1).then_some(()) },
    )
    .await;
    let edits = match change {
        Change::OffAndOn => vec![json!({"is_active": false}), json!({"is_active": true})],
        Change::NewUrl => vec![json!({"url": receiver.url("/new")})],
        Change::NewSecret => vec![],
        Change::Description => vec![json!({"description": "now described", "name": "renamed",
            "metadata": {"team": "billing"}})],
    };
    for edit in &edits {
        editor
            .ok("editWebhook", json!([editor.key, edited, edit]))
            .await;
    }
    let mut secret = Value::Null;
    if change == Change::NewSecret {
        secret = editor
            .ok("rotateWebhookSecret", json!([editor.key, edited]))
            .await;
    }
    let changes = edits.len().max(1);
    if !std::ptr::eq(server, editor) && change != Change::Description {
        // Another node's change is heard through the database, a moment after its commit.
        let heard = format!("Webhooks([{edited}])");
        eventually("the change heard", WAIT, || async {
            (server.stderr().matches(&heard).count() == changes).then_some(())
        })
        .await;
    }
    let (path, expected) = match change {
        // Published after the webhook is on again: it goes out after the held batch's turn.
        Change::OffAndOn => (
            "/old",
            server.ok("addEvent", json!([server.key, updated])).await,
        ),
        Change::NewUrl => ("/new", waiting.clone()),
        Change::NewSecret | Change::Description => ("/old", waiting.clone()),
    };
    if change == Change::Description {
        // Queued behind the held batch: it must still go out first.
        let created = json!({"object": "contact", "event": "created"});
        server.ok("addEvent", json!([server.key, created])).await;
    }
    receiver.let_through(100);
    let request = eventually("the expected delivery received", WAIT, || async {
        let received = receiver.received();
        let mut sent = received.into_iter().filter(|r| r.path == path);
        sent.find(|r| r.items().iter().any(|i| i["id"] == expected))
    })
    .await;
    if change == Change::Description {
        let paths: Vec<String> = receiver.received().into_iter().map(|r| r.path).collect();
        assert_eq!(
            paths[..2],
            ["/busy", "/old"],
            "the held batch kept its place"
        );
        return;
    }
    if change == Change::NewSecret {
        let secret = secret.as_str().unwrap();
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&request.body, &request.headers)
            .expect("the new secret signs what was read before the rotation");
        return;
    }
    let at_old: Vec<Value> = receiver
        .received()
        .iter()
        .filter(|r| r.path == "/old")
        .flat_map(|r| r.items())
        .collect();
    assert!(
        at_old.iter().all(|item| item["id"] != waiting),
        "{change:?}: the batch read before the edit went out as read: {at_old:?}"
    );
    if change == Change::OffAndOn {
        let delivery = server.delivery_of(&waiting).await;
        let delivery = server
            .ok("getDeliveryById", json!([server.key, delivery]))
            .await;
        assert_eq!(delivery["status"], "cancelled", "{delivery}");
        assert_eq!(delivery["attempt_count"], 0, "{delivery}");
    }
}
