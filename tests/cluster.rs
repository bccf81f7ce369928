//! A cluster: several real `hookrpc serve` processes sharing one PostgreSQL database, as behind a
//! load balancer. These run when the suite runs on PostgreSQL (`HOOKRPC_TEST_DB`, as
//! `scripts/test-both` sets it) and say they were skipped otherwise.

mod common;
use common::commit_cutter::{CommitCutter, Cut};
use common::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn skipped(test: &str) -> bool {
    let skip = postgres_admin_url().is_none();
    if skip {
        eprintln!("{test}: skipped: a cluster needs PostgreSQL (set HOOKRPC_TEST_DB, or run scripts/test-both)");
    }
    skip
}

/// Three nodes on one database, each delivering.
fn three_nodes(args: &[&str]) -> [Server; 3] {
    let a = Server::start(args);
    let b = Server::join(&a, args);
    let c = Server::join(&a, args);
    [a, b, c]
}

fn contact_event(n: usize) -> Value {
    json!({"object": "contact", "event": "subscribed", "data": {"n": n}})
}

/// Publishes `count` events one call each, round-robin over `nodes`; returns their ids.
async fn publish_round_robin(nodes: &[&Server], count: usize, from: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(count);
    for n in from..from + count {
        let node = nodes[n % nodes.len()];
        let id = node
            .ok("addEvent", json!([node.key, contact_event(n)]))
            .await;
        ids.push(id.as_i64().expect("event id"));
    }
    ids
}

/// How many times the receiver got each event id.
fn received_events(receiver: &Receiver) -> HashMap<i64, usize> {
    let mut seen = HashMap::new();
    for item in receiver.items() {
        *seen.entry(item["id"].as_i64().expect("id")).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn three_nodes_deliver_every_event_once_and_never_the_same_delivery_twice() {
    if skipped("three_nodes_deliver_every_event_once") {
        return;
    }
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Slow(Duration::from_millis(2)));
    let nodes = three_nodes(FAST);
    nodes[0]
        .ok(
            "addWebhook",
            json!([nodes[0].key, webhook(&receiver.url("/all"))]),
        )
        .await;
    let [a, b, c] = &nodes;
    let ids = publish_round_robin(&[a, b, c], 300, 0).await;
    let seen = eventually("every event delivered", WAIT, || async {
        let seen = received_events(&receiver);
        ids.iter().all(|id| seen.contains_key(id)).then_some(seen)
    })
    .await;
    // Every request succeeded, so nothing was retried: an event seen twice was sent by two
    // nodes.
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(seen.len(), ids.len());
}

#[tokio::test]
async fn every_acknowledged_event_arrives_when_a_node_is_killed_mid_burst() {
    if skipped("every_acknowledged_event_arrives_when_a_node_is_killed") {
        return;
    }
    let receiver = Receiver::start().await;
    // Slow enough that every node has requests in flight when one dies.
    receiver.set_reply(Reply::Slow(Duration::from_millis(30)));
    let args = [FAST, &["--lease", "4s", "--shutdown-grace", "0s"]].concat();
    let [a, b, mut c] = three_nodes(&args);
    a.ok("addWebhook", json!([a.key, webhook(&receiver.url("/all"))]))
        .await;
    let mut acknowledged = publish_round_robin(&[&a, &b, &c], 150, 0).await;
    eventually("deliveries under way", WAIT, || async {
        (receiver.received().len() >= 20).then_some(())
    })
    .await;
    c.kill9();
    acknowledged.extend(publish_round_robin(&[&a, &b], 150, 150).await);
    let seen = eventually("every acknowledged event delivered", WAIT, || async {
        let seen = received_events(&receiver);
        acknowledged
            .iter()
            .all(|id| seen.contains_key(id))
            .then_some(seen)
    })
    .await;
    assert!(acknowledged.iter().all(|id| seen[id] >= 1));
}

/// A node that delivers, and one beside it that only answers calls (whatever is delivered, the
/// first node delivered), with a webhook to `receiver`.
async fn delivering_and_api_only(receiver: &Receiver) -> (Server, Server) {
    let delivering = Server::start(FAST);
    let api_only = Server::join(
        &delivering,
        &[FAST, &["--delivery-concurrency", "0"]].concat(),
    );
    delivering
        .ok(
            "addWebhook",
            json!([delivering.key, webhook(&receiver.url("/a"))]),
        )
        .await;
    (delivering, api_only)
}

/// Checks that an event published on `api_only` wakes the delivering node through PostgreSQL.
async fn woken_by_the_other_node(api_only: &Server, receiver: &Receiver) {
    // Let the delivering node's engine fall asleep with nothing due: unwoken, it would look
    // at the queue again only after 5 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = api_only
        .ok("addEvent", json!([api_only.key, contact_event(0)]))
        .await;
    eventually(
        "the event, woken by the other node's NOTIFY",
        Duration::from_secs(1),
        || async {
            received_events(receiver)
                .contains_key(&id.as_i64()?)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_node_delivers_what_another_node_was_given_without_polling() {
    if skipped("a_node_delivers_what_another_node_was_given") {
        return;
    }
    let receiver = Receiver::start().await;
    let (_delivering, api_only) = delivering_and_api_only(&receiver).await;
    woken_by_the_other_node(&api_only, &receiver).await;
}

/// What a restart or a failover of PostgreSQL looks like to a node: every connection it holds
/// is cut. A call meanwhile may fail (100: the node cannot know whether it committed); then
/// both nodes answer calls again, deliver everything they acknowledged, and hear each other
/// again.
#[tokio::test]
async fn nodes_carry_on_when_postgresql_cuts_every_connection() {
    if skipped("nodes_carry_on_when_postgresql_cuts_every_connection") {
        return;
    }
    let receiver = Receiver::start().await;
    let (delivering, api_only) = delivering_and_api_only(&receiver).await;
    let nodes = [&delivering, &api_only];
    let mut acknowledged = publish_round_robin(&nodes, 10, 0).await;
    let cut = psql(
        delivering.db(),
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    // Each node's listener and at least one pooled connection.
    assert!(cut.parse::<usize>().unwrap() >= 4, "cut {cut}");
    for (n, node) in nodes.iter().enumerate() {
        let id = eventually("calls answered again", WAIT, || async {
            let reply = node
                .rpc("addEvent", json!([node.key, contact_event(10 + n)]))
                .await;
            reply["result"].as_i64()
        })
        .await;
        acknowledged.push(id);
    }
    acknowledged.extend(publish_round_robin(&nodes, 10, 20).await);
    eventually("every acknowledged event delivered", WAIT, || async {
        let seen = received_events(&receiver);
        acknowledged
            .iter()
            .all(|id| seen.contains_key(id))
            .then_some(())
    })
    .await;
    woken_by_the_other_node(&api_only, &receiver).await;
}

/// While it lives, this machine drops every packet to and from `port`, as when a database
/// host vanishes in a failover or the network between fails: nothing answers, not even with a
/// refusal.
struct BlackHole(u16);

impl BlackHole {
    const RULES: [&str; 2] = ["--dport", "--sport"];

    /// Why not, where the firewall cannot be changed (iptables missing, not root, or a
    /// container without the right to).
    fn start(port: u16) -> Result<BlackHole, String> {
        let hole = BlackHole(port);
        for side in Self::RULES {
            hole.iptables("-I", side)?;
        }
        Ok(hole)
    }

    fn iptables(&self, action: &str, side: &str) -> Result<(), String> {
        let port = self.0.to_string();
        let out = std::process::Command::new("iptables")
            .args([action, "INPUT", "-p", "tcp", side, &port, "-j", "DROP"])
            .output()
            .map_err(|e| format!("iptables: {e}"))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        for side in Self::RULES {
            let _ = self.iptables("-D", side);
        }
    }
}

/// A database that stops answering at the network's level (its host gone in a failover, every
/// packet dropped) must not hold calls for the kernel's own limits (two minutes to connect,
/// a quarter of an hour for data sent and never acknowledged, two hours of silence before a
/// connection whose data was acknowledged is checked): calls answer 100 and `/health` 503
/// while it lasts, and work again, on new connections, once it ends.
#[tokio::test]
async fn calls_answer_100_while_the_database_is_unreachable() {
    if skipped("calls_answer_100_while_the_database_is_unreachable") {
        return;
    }
    // The node reaches PostgreSQL through a proxy, whose port alone is black-holed: other tests
    // share the server.
    let first = Server::start(&[]);
    let proxy = CommitCutter::start(first.database.server_addr(), "never cut");
    let node = Server::start_on(Arc::new(first.database.via(proxy.addr)), &first.key, &[]);
    let publish = |n| node.rpc("addEvent", json!([node.key, contact_event(n)]));
    assert!(publish(1).await["result"].is_i64());
    // Whether the firewall can be changed here (the hole made to find out closes at once).
    if let Err(why) = BlackHole::start(proxy.addr.port()) {
        eprintln!("calls_answer_100_while_the_database_is_unreachable: skipped: needs iptables, as root: {why}");
        return;
    }
    // A call whose statement the database has (its packets acknowledged), and waits on a lock
    // when the network fails: its answer never comes. (Deadlines far past the server's own,
    // so that old code fails rather than hangs.)
    let (locker, connection) = tokio_postgres::connect(first.db(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let cut_while_waiting = async {
        eventually("the call waits on the lock", WAIT, || async {
            let waiting = psql(
                first.db(),
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            );
            (waiting != "0").then_some(())
        })
        .await;
        let hole = BlackHole::start(proxy.addr.port()).expect("the firewall changed just now");
        locker.batch_execute("ROLLBACK").await.unwrap();
        hole
    };
    let (reply, hole) = tokio::join!(tokio::time::timeout(WAIT, publish(2)), cut_while_waiting);
    let reply = reply.expect("a call in flight answers while the database is unreachable");
    assert_eq!(reply["error"]["code"], 100, "{reply}");
    // Pooled connections are taken and written to, and nothing comes back; new ones are tried
    // and given up.
    for n in [3, 4] {
        let reply = tokio::time::timeout(WAIT, publish(n))
            .await
            .expect("a call answers while the database is unreachable");
        assert_eq!(reply["error"]["code"], 100, "{reply}");
    }
    let health = reqwest::get(format!("http://{}/health", node.addr)).await;
    assert_eq!(health.unwrap().status(), 503);
    drop(hole);
    eventually("calls answered again", WAIT, || async {
        publish(5).await["result"].as_i64()
    })
    .await;
}

/// Publishes `event` on `api_only`, with the connection of the next record of `delivering`
/// (which reaches PostgreSQL through `cutter`) cut at its commit, `when`, and waits for its
/// delivery to end as `end`. Then stops `delivering`, which it does only after its records,
/// including one tried again after a pause. Returns how many attempts the delivery shows.
async fn delivered_with_a_record_cut(
    api_only: &Server,
    delivering: &mut Server,
    (cutter, when): (&CommitCutter, Cut),
    event: Value,
    end: &str,
) -> i64 {
    let cuts = cutter.cuts();
    cutter.arm(when);
    let id = api_only.ok("addEvent", json!([api_only.key, event])).await;
    let delivery = api_only.delivery_of(&id).await;
    api_only.delivery_with_status(&delivery, end).await;
    delivering.stop();
    assert_eq!(cutter.cuts(), cuts + 1, "a record was cut");
    let delivery = api_only
        .ok("getDeliveryById", json!([api_only.key, delivery]))
        .await;
    let attempts = delivery["attempts"].as_array().unwrap().len() as i64;
    assert_eq!(delivery["attempt_count"], attempts, "{delivery}");
    attempts
}

/// When a record's commit goes through but its answer is lost with the connection (PostgreSQL
/// restarting, the network failing at that moment), the engine cannot tell it from a record
/// that failed, and records the attempt again. That second record must find the first and
/// write nothing: one request is one attempt, counted once. A success (recorded together with
/// others) and a failure (on its own, with what its webhook learns) go through both ways of
/// recording; and a record whose commit never reached the server must still be written.
#[tokio::test]
async fn an_attempt_whose_record_committed_but_went_unanswered_is_recorded_once() {
    if skipped("an_attempt_whose_record_committed_but_went_unanswered_is_recorded_once") {
        return;
    }
    let (receiver, failing) = (Receiver::start().await, Receiver::start().await);
    failing.set_reply(Reply::Status(500));
    let api_only = Server::start(&[FAST, &["--delivery-concurrency", "0"]].concat());
    let cutter = CommitCutter::start(api_only.database.server_addr(), "INSERT INTO attempts");
    // The only node that delivers, and so records, reaches PostgreSQL through the cutter.
    let through_cutter = Arc::new(api_only.database.via(cutter.addr));
    let mut delivering = Server::start_on(through_cutter, &api_only.key, FAST);
    let key = &api_only.key;
    let up = json!({"object": "contact", "event": "subscribed", "url": receiver.url("/up")});
    let down = json!({"object": "list", "event": "created", "url": failing.url("/down")});
    let up = api_only.ok("addWebhook", json!([key, up])).await;
    let down = api_only.ok("addWebhook", json!([key, down])).await;

    let lost_answer = (&cutter, Cut::AfterCommit);
    let event = contact_event(1);
    let attempts =
        delivered_with_a_record_cut(&api_only, &mut delivering, lost_answer, event, "succeeded")
            .await;
    assert_eq!((attempts, receiver.received().len()), (1, 1));
    delivering.restart();
    // A failure counted twice would also cut the schedule short by a request.
    let event = json!({"object": "list", "event": "created", "data": {}});
    let attempts =
        delivered_with_a_record_cut(&api_only, &mut delivering, lost_answer, event, "failed").await;
    assert_eq!(
        (attempts, failing.received().len()),
        (4, 4),
        "FAST's schedule: the first request and three retries, each one attempt"
    );
    // A record whose commit never happened is written by the next try.
    delivering.restart();
    let lost_commit = (&cutter, Cut::BeforeCommit);
    let event = contact_event(2);
    let attempts =
        delivered_with_a_record_cut(&api_only, &mut delivering, lost_commit, event, "succeeded")
            .await;
    assert_eq!((attempts, receiver.received().len()), (1, 2));

    // Counted once each in the statistics too.
    for (webhook_id, attempts) in [(up, 2), (down, 4), (json!(0), 6)] {
        let stats = api_only
            .ok(
                "getDeliveryStats",
                json!({"api_key": key, "webhook_id": webhook_id}),
            )
            .await;
        let counted: i64 = stats
            .as_array()
            .unwrap()
            .iter()
            .map(|bucket| bucket["attempts"].as_i64().unwrap())
            .sum();
        assert_eq!(counted, attempts, "{stats}");
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_every_node() {
    if skipped("a_revoked_key_is_refused_by_every_node") {
        return;
    }
    let nodes = three_nodes(&[]);
    let key = nodes[0].add_key("default", "full");
    for node in &nodes {
        node.ok("countWebhooks", json!([key])).await;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrpc"))
        .args(["key", "revoke", &key[..12], "--db", nodes[0].db()])
        .output()
        .expect("key revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in &nodes {
        // A node remembers a key for a second (KEY_CACHE_TTL) before it asks the database.
        eventually("the key refused", Duration::from_secs(2), || async {
            let reply = node.rpc("countWebhooks", json!([key])).await;
            (reply["error"]["code"] == 300).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn three_nodes_started_at_once_on_an_empty_database_all_come_up() {
    if skipped("three_nodes_started_at_once_on_an_empty_database") {
        return;
    }
    let nodes = Server::start_together(3, &[]);
    for node in &nodes {
        assert_eq!(node.ok("countWebhooks", json!([node.key])).await, 0);
    }
    let admin = postgres_admin_url().expect("on PostgreSQL");
    let (base, _) = admin.rsplit_once('/').unwrap();
    let db = nodes[0].db();
    assert!(db.starts_with(base));
    // Migrations ran once, and one node (not three) created the first account and key.
    let versions = psql(
        db,
        "SELECT count(*), count(DISTINCT version) FROM schema_migrations",
    );
    let (all, distinct) = versions.split_once('|').unwrap();
    assert_eq!(all, distinct, "a migration recorded twice");
    assert_eq!(psql(db, "SELECT count(*) FROM api_keys"), "1");
    let unique: HashSet<_> = nodes.iter().map(|n| n.addr).collect();
    assert_eq!(unique.len(), 3);
}
