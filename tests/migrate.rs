//! `hookrpc migrate`: a SQLite deployment copied into PostgreSQL carries on there. Runs when the
//! suite has a PostgreSQL server (`HOOKRPC_TEST_DB`, as `scripts/test-both` sets it) and says it
//! was skipped otherwise.

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const TABLES: &[&str] = &[
    "accounts",
    "api_keys",
    "webhooks",
    "webhook_events",
    "events",
    "deliveries",
    "attempts",
    "delivery_attempts",
    "attempt_stats",
    "encryption_key_check",
];

fn migrate(from: &str, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hookrpc"))
        .args(["migrate", "--from", from, "--to", to])
        .output()
        .expect("run hookrpc migrate")
}

fn sqlite_count(file: &std::path::Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Webhooks with secrets (one rotated), Basic auth, two accounts, events, deliveries that
/// succeeded and failed, and their attempts.
async fn populate(server: &Server, receiver: &Receiver) -> (Value, Value) {
    let other = server.add_key("other", "full");
    let hook = server
        .ok(
            "addWebhook",
            json!([server.key, {"object": "contact", "event": "subscribed", "url": receiver.url("/ok"),
                   "auth": {"username": "u", "password": "p"}, "headers": [{"name": "X-A", "value": "1"}]}]),
        )
        .await;
    server
        .ok("rotateWebhookSecret", json!([server.key, hook]))
        .await;
    let failing = server
        .ok(
            "addWebhook",
            json!([other, {"object": "contact", "event": "subscribed", "url": receiver.url("/fail")}]),
        )
        .await;
    receiver.set_reply(Reply::Status(500));
    for n in 0..5 {
        for key in [&server.key, &other] {
            server
                .ok(
                    "addEvent",
                    json!([key, {"object": "contact", "event": "subscribed", "data": {"n": n}}]),
                )
                .await;
        }
    }
    eventually(
        "the failing deliveries failed",
        Duration::from_secs(60),
        || async {
            let failed = server
                .ok(
                    "countDeliveries",
                    json!([other, [["status", "exactly", "failed"]]]),
                )
                .await;
            (failed == 5).then_some(())
        },
    )
    .await;
    (hook, failing)
}

#[tokio::test]
async fn a_sqlite_deployment_moves_to_postgres_with_its_history_and_secrets() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!(
            "migrate: skipped: needs PostgreSQL (set HOOKRPC_TEST_DB, or run scripts/test-both)"
        );
        return;
    };
    let receiver = Receiver::start().await;
    let mut old = Server::start_on_sqlite(&["--allow-private-targets", "--retry-schedule", "10ms"]);
    let (hook, _) = populate(&old, &receiver).await;
    // Read by a node that sends nothing, so that no retry changes the webhook meanwhile.
    let calls_only = ["--allow-private-targets", "--delivery-concurrency", "0"];
    old.restart_with(&calls_only);
    let before = old.ok("getWebhookById", json!([old.key, hook])).await;
    old.stop();

    let target = Arc::new(Database::postgres(admin));
    let out = migrate(old.db(), &target.arg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in TABLES {
        let copied = psql(&target.arg, &format!("SELECT count(*) FROM {table}"));
        assert_eq!(
            copied,
            sqlite_count(&old.db_file(), table).to_string(),
            "{table}"
        );
        assert_ne!(copied, "0", "{table} has rows to copy");
    }

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "--encryption-key (or HOOKRPC_ENCRYPTION_KEY) set to the contents of the key file"
        ),
        "{stdout}"
    );
    // The secrets were copied sealed: a node with another key is refused, clearly.
    let (code, stderr) = serve_to_exit_with(&target.arg, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not the key"), "{stderr}");

    // The same key, the same ids, the same secrets: a new event is signed with the webhook's
    // current secret and the rotated-out one, as before.
    let sqlite_key = std::fs::read_to_string(old.dir.path().join("hookrpc.key")).unwrap();
    let args = [FAST, &["--encryption-key", sqlite_key.trim()]].concat();
    let mut new = Server::start_on(
        target.clone(),
        &old.key,
        &[&args[..], &calls_only[1..]].concat(),
    );
    let after = new.ok("getWebhookById", json!([new.key, hook])).await;
    assert_eq!(after, before);
    new.restart_with(&args);
    receiver.set_reply(Reply::Status(200));
    let event = new
        .ok(
            "addEvent",
            json!([new.key, {"object": "contact", "event": "subscribed"}]),
        )
        .await;
    let got = eventually("the new event", Duration::from_secs(30), || async {
        receiver
            .received()
            .into_iter()
            .find(|r| r.path == "/ok" && r.items().iter().any(|i| i["id"] == event))
    })
    .await;
    let secret = after["secret"].as_str().unwrap();
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&got.body, &got.headers)
        .expect("signed with the copied secret");
    let signatures = got.headers["webhook-signature"].to_str().unwrap();
    assert_eq!(
        signatures.split(' ').count(),
        2,
        "the rotated-out secret signs too"
    );
    // New rows follow the copied ids.
    assert!(event.as_i64().unwrap() > 10);

    // A database that holds data is refused, and left as it was.
    let events = psql(&target.arg, "SELECT count(*) FROM events");
    let again = migrate(old.db(), &target.arg);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(psql(&target.arg, "SELECT count(*) FROM events"), events);
}
