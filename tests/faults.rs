//! Storage faults: while another process holds SQLite's write lock past the busy timeout, or
//! the disk is full, writes fail with 100 and a request id, reads and delivery keep going or
//! wait, nothing crashes, and everything works again once the fault is gone.
//! (Receiver faults are in delivery_failures.rs, crashes in recovery.rs.)

mod common;
use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn a_locked_database_gives_100_with_a_request_id_and_the_server_recovers() {
    if on_postgres("a_locked_database_gives_100_with_a_request_id_and_the_server_recovers") {
        return;
    }
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Status(503));
    let server = Server::start(&["--allow-private-targets", "--retry-schedule", "100ms"]);
    let hook = server
        .ok(
            "addWebhook",
            json!([server.key, webhook(&receiver.url("/"))]),
        )
        .await;
    let event = server
        .ok(
            "addEvent",
            json!([server.key, {"object": "contact", "event": "subscribed"}]),
        )
        .await;
    let delivery = server.delivery_of(&event).await;

    // Another process takes the write lock and keeps it.
    let intruder = rusqlite::Connection::open(server.db_file()).unwrap();
    intruder.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let (code, data) = server
        .err(
            "addWebhook",
            json!([server.key, webhook("https://example.com/during-the-lock")]),
        )
        .await;
    assert_eq!(code, 100);
    let request_id = data["request_id"]
        .as_str()
        .expect("a request id")
        .to_owned();
    assert!(!request_id.is_empty());
    let logs = server.stderr();
    let line = logs
        .lines()
        .find(|l| l.contains(&request_id) && l.contains("call failed"))
        .unwrap_or_else(|| panic!("no log line names {request_id}: {logs}"));
    assert!(line.contains("locked") || line.contains("busy"), "{line}");
    // The reply does not leak the cause.
    assert!(!data.to_string().contains("sqlite"), "{data}");
    // /health says so, with the reason: its probe write waits for the lock and gives up too.
    let (status, body) = health(&server, reqwest::Method::GET).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("refuses writes") && body.contains("locked"),
        "{body}"
    );

    // Reads are unaffected, and so is the Vision6 dialect's reply shape for the failure.
    let got = server.ok("getWebhookById", json!([server.key, hook])).await;
    assert_eq!(got["id"], hook);
    let (status, text) = server
        .post_raw(
            "/api/jsonrpcserver.php?version=3.3",
            json!({"id": 7, "method": "addEvent",
                   "params": [server.key, {"object": "contact", "event": "created"}]})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let v1: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v1["result"], Value::Null);
    assert_eq!(v1["error"]["code"], 100);
    assert!(v1["error"]["data"]["request_id"].is_string(), "{v1}");

    // The lock goes away: writes work, the failed calls left nothing, delivery resumes.
    intruder.execute_batch("ROLLBACK").unwrap();
    drop(intruder);
    receiver.set_reply(Reply::Status(200));
    let after = server
        .ok(
            "addWebhook",
            json!([server.key, webhook("https://example.com/after-the-lock")]),
        )
        .await;
    assert!(after.as_i64().unwrap() > hook.as_i64().unwrap());
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 2);
    assert_eq!(server.ok("countEvents", json!([server.key])).await, 1);
    let done = eventually("the delivery succeeds", Duration::from_secs(60), || async {
        let d = server
            .ok("getDeliveryById", json!([server.key, delivery]))
            .await;
        (d["status"] == "succeeded").then_some(d)
    })
    .await;
    assert!(done["attempt_count"].as_i64().unwrap() >= 2, "{done}");
    let health = reqwest::get(format!("http://{}/health", server.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// Sets the soft RLIMIT_FSIZE of a running process from outside (util-linux `prlimit`).
fn limit_file_size(server: &Server, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", server.pid()))
        .arg(format!("--fsize={limit}:"))
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success(), "prlimit --fsize={limit}:");
}

/// A full disk, as far as the server can tell: with a file-size limit of one byte, every
/// write that would grow a file fails (its log file's too). Writes answer 100 with a request
/// id, reads go on, the process lives on, and once the limit is lifted writes work again.
#[tokio::test]
async fn a_full_disk_gives_100_and_the_server_recovers() {
    if on_postgres("a_full_disk_gives_100_and_the_server_recovers") {
        return;
    }
    let server = Server::start(&[]);
    let hook = server
        .ok(
            "addWebhook",
            json!([server.key, webhook("https://example.com/before")]),
        )
        .await;

    limit_file_size(&server, "1");
    for (method, params) in [
        (
            "addWebhook",
            json!([server.key, webhook("https://example.com/full")]),
        ),
        (
            "addEvent",
            json!([server.key, {"object": "contact", "event": "subscribed"}]),
        ),
        ("deleteWebhook", json!([server.key, hook])),
    ] {
        let (code, data) = server.err(method, params).await;
        assert_eq!(code, 100, "{method}");
        assert!(data["request_id"].is_string(), "{method}: {data}");
    }
    let got = server.ok("getWebhookById", json!([server.key, hook])).await;
    assert_eq!(got["url"], "https://example.com/before");

    limit_file_size(&server, "unlimited");
    server
        .ok(
            "addWebhook",
            json!([server.key, webhook("https://example.com/after")]),
        )
        .await;
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 2);
    assert_eq!(server.ok("countEvents", json!([server.key])).await, 0);
    let health = reqwest::get(format!("http://{}/health", server.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// `/health` as GET and as HEAD: the status, and the body (empty for HEAD).
async fn health(server: &Server, method: reqwest::Method) -> (u16, String) {
    let r = reqwest::Client::new()
        .request(method, format!("http://{}/health", server.addr))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Health tells the truth: while the database refuses writes (here a file-size limit, as a
/// full disk), `/health` answers 503 with the reason, although reads still work; once writes
/// work again it answers 200 by itself (its own probe write succeeds), and so do writes.
#[tokio::test]
async fn health_is_503_while_writes_are_refused_and_200_once_they_work() {
    if on_postgres("health_is_503_while_writes_are_refused_and_200_once_they_work") {
        return;
    }
    let server = Server::start(&[]);
    assert_eq!(health(&server, reqwest::Method::GET).await.0, 200);
    let (status, body) = health(&server, reqwest::Method::HEAD).await;
    assert_eq!((status, body.as_str()), (200, ""));

    limit_file_size(&server, "1");
    let (code, _) = server
        .err(
            "addWebhook",
            json!([server.key, webhook("https://example.com/full")]),
        )
        .await;
    assert_eq!(code, 100);
    let (status, body) = health(&server, reqwest::Method::GET).await;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("database refuses writes"), "{body}");
    // Asking again does not make it true: each probe is a real write, refused like the rest.
    assert_eq!(health(&server, reqwest::Method::GET).await.0, 503);
    let (status, body) = health(&server, reqwest::Method::HEAD).await;
    assert_eq!((status, body.as_str()), (503, ""));

    limit_file_size(&server, "unlimited");
    eventually("/health to answer 200", Duration::from_secs(30), || async {
        (health(&server, reqwest::Method::GET).await.0 == 200).then_some(())
    })
    .await;
    server
        .ok(
            "addWebhook",
            json!([server.key, webhook("https://example.com/after")]),
        )
        .await;
}

/// An idle server is not taken at its word: with nothing written lately, `/health` tries a
/// write itself, so a disk that filled up while nobody called shows as 503 without a call
/// having to fail first.
#[tokio::test]
async fn an_idle_server_whose_writes_are_refused_is_not_healthy() {
    if on_postgres("an_idle_server_whose_writes_are_refused_is_not_healthy") {
        return;
    }
    let server = Server::start(&[]);
    assert_eq!(health(&server, reqwest::Method::GET).await.0, 200);
    limit_file_size(&server, "1");
    let reason = eventually("/health to answer 503", Duration::from_secs(30), || async {
        let (status, body) = health(&server, reqwest::Method::GET).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(reason.contains("database refuses writes"), "{reason}");
    limit_file_size(&server, "unlimited");
    eventually("/health to answer 200", Duration::from_secs(30), || async {
        (health(&server, reqwest::Method::GET).await.0 == 200).then_some(())
    })
    .await;
}

/// A damaged row (event data that is no longer JSON, written behind the server's back) does
/// not stop delivery: its item goes out with null data, and the other events with it.
#[tokio::test]
async fn a_damaged_event_row_does_not_stop_delivery() {
    if on_postgres("a_damaged_event_row_does_not_stop_delivery") {
        return;
    }
    let receiver = Receiver::start().await;
    receiver.set_reply(Reply::Status(503));
    let server = Server::start(&["--allow-private-targets", "--retry-schedule", "1s"]);
    server
        .ok(
            "addWebhook",
            json!([server.key, webhook(&receiver.url("/"))]),
        )
        .await;
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"object": "contact", "event": "subscribed", "data": {"n": i}}))
        .collect();
    let ids = server.ok("addEvents", json!([server.key, events])).await;
    let damaged = ids[1].as_i64().unwrap();
    // The first attempt fails; the row is damaged before the retry a second later.
    eventually("the first attempt", Duration::from_secs(60), || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    rusqlite::Connection::open(server.db_file())
        .unwrap()
        .execute(
            "UPDATE events SET data = '{not json' WHERE id = ?1",
            [damaged],
        )
        .unwrap();
    let first_attempts = receiver.received().len();
    receiver.set_reply(Reply::Status(200));
    let retried = eventually(
        "all three events again",
        Duration::from_secs(60),
        || async {
            let items: Vec<Value> = receiver.received()[first_attempts..]
                .iter()
                .flat_map(|r| r.items())
                .collect();
            (items.len() >= 3).then_some(items)
        },
    )
    .await;
    for item in &retried {
        if item["id"] == damaged {
            assert_eq!(item["data"], Value::Null, "{item}");
        } else {
            assert!(item["data"]["n"].is_i64(), "{item}");
        }
    }
}

/// A small filesystem of its own (tmpfs), unmounted when dropped; `None` where mounting is
/// not allowed (not root, or a container without the capability).
struct SmallDisk {
    dir: Arc<tempfile::TempDir>,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let fs = dir.path().join("fs");
        std::fs::create_dir(&fs).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&fs)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("fs")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(self.path())
            .status();
    }
}

/// After a full disk, freeing a little space is enough: writes, `/health` and delivery come
/// back without waiting for the database to find room for all the pages its WAL still holds
/// (before the fix, freeing 2 MB of a full 24 MB disk let one small write in, then claims
/// failed with SQLITE_FULL for good: the checkpoint needed more than that). Needs a tmpfs
/// mount; skipped where that is refused.
#[tokio::test]
async fn after_a_full_disk_a_little_free_space_is_enough_to_recover() {
    if on_postgres("after_a_full_disk_a_little_free_space_is_enough_to_recover") {
        return;
    }
    let Some(disk) = SmallDisk::mount(24) else {
        println!("skipped: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)");
        return;
    };
    // The server's log stays on the real disk; only the database is on the small one.
    std::os::unix::fs::symlink(
        disk.path().join("hookrpc.db"),
        disk.dir.path().join("hookrpc.db"),
    )
    .unwrap();
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 2 << 20]).unwrap();
    let receiver = Receiver::start().await;
    let server = Server::start_in(disk.dir.clone(), FAST);
    assert!(
        disk.path().join("hookrpc.db-wal").exists(),
        "the WAL is on the small disk"
    );
    server
        .ok(
            "addWebhook",
            json!([server.key, webhook(&receiver.url("/"))]),
        )
        .await;

    // Big events until one is refused; then small ones until /health is refused too: its
    // probe is a write of a few bytes, which may still find room after a big event did not.
    let mut pad = "x".repeat(200_000);
    let mut accepted = 0;
    let mut refused_health = None; // /health's answer after the last refused write
    for calls in 0.. {
        assert!(
            calls < 2000,
            "24 MB should have filled up by now (/health after a refused write: {refused_health:?})"
        );
        let reply = server
            .rpc(
                "addEvent",
                json!([server.key, {"object": "contact", "event": "subscribed",
                                    "data": {"pad": pad}}]),
            )
            .await;
        if reply.get("error").is_some() {
            assert_eq!(reply["error"]["code"], 100, "{reply}");
            let (status, body) = health(&server, reqwest::Method::GET).await;
            if status == 503 {
                break;
            }
            refused_health = Some((status, body));
            pad.clear();
        } else {
            accepted += 1;
        }
    }

    std::fs::remove_file(&ballast).unwrap();
    let event = json!({"object": "contact", "event": "subscribed"});
    eventually("a write to succeed", Duration::from_secs(60), || async {
        let reply = server.rpc("addEvent", json!([server.key, event])).await;
        reply.get("result").map(|_| ())
    })
    .await;
    accepted += 1;
    eventually(
        "every accepted event delivered",
        Duration::from_secs(60),
        || async { (receiver.items().len() >= accepted).then_some(()) },
    )
    .await;
    assert_eq!(health(&server, reqwest::Method::GET).await.0, 200);
}
