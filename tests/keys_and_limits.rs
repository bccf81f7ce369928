//! Keys (300, the `key` commands, revocation) and the transport limits: 399 per-key
//! concurrency, 413 body size, any content type, 405 verb.
mod common;
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every method that takes a key, with otherwise plausible params.
fn every_method(key: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("addWebhook", json!([key, webhook("https://example.com/k")])),
        ("editWebhook", json!([key, 1, {"name": "x"}])),
        ("deleteWebhook", json!([key, 1])),
        ("getWebhookById", json!([key, 1])),
        ("searchWebhooks", json!([key])),
        ("countWebhooks", json!([key])),
        ("rotateWebhookSecret", json!([key, 1])),
        ("testWebhook", json!([key, 1])),
        (
            "addEvent",
            json!([key, {"object": "list", "event": "created"}]),
        ),
        (
            "addEvents",
            json!([key, [{"object": "list", "event": "created"}]]),
        ),
        ("getEventById", json!([key, 1])),
        ("searchEvents", json!([key])),
        ("countEvents", json!([key])),
        ("getDeliveryById", json!([key, 1])),
        ("searchDeliveries", json!([key])),
        ("countDeliveries", json!([key])),
        ("retryDelivery", json!([key, 1])),
    ]
}

fn hookrpc(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .arg("--db")
        .arg(server.db())
        .output()
        .expect("run hookrpc")
}

async fn assert_300(server: &Server, method: &str, params: Value) {
    let reply = server.rpc(method, params.clone()).await;
    assert_eq!(reply["error"]["code"], 300, "{method} {params}: {reply}");
    assert_eq!(
        reply["error"]["message"],
        "Authorisation Failed - Invalid API Key"
    );
}

#[tokio::test]
async fn missing_unknown_and_malformed_keys_are_300_on_every_method() {
    let server = Server::start(&[]);
    let unknown = "0".repeat(64);
    for (method, params) in every_method(&unknown) {
        assert_300(&server, method, params).await;
    }
    for (method, params) in every_method(&server.key.to_uppercase()) {
        assert_300(&server, method, params).await;
    }
    for (method, params) in every_method(&server.key[..63]) {
        assert_300(&server, method, params).await;
    }
    for (method, _) in every_method("") {
        assert_300(&server, method, json!([])).await;
        assert_300(&server, method, json!([null])).await;
        assert_300(&server, method, json!([""])).await;
        assert_300(&server, method, json!([12345])).await;
        assert_300(&server, method, json!({})).await;
        assert_300(&server, method, json!({"api_key": null})).await;
        // No params at all.
        let (status, text) = server
            .post_raw(
                "/",
                json!({"jsonrpc": "2.0", "id": 1, "method": method}).to_string(),
            )
            .await;
        assert_eq!(status, 200);
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            reply["error"]["code"], 300,
            "{method} without params: {reply}"
        );
    }
    // Nothing was created by any of it.
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 0);
    assert_eq!(server.ok("countEvents", json!([server.key])).await, 0);
    // rpc.discover needs no key.
    assert!(server.ok("rpc.discover", json!([])).await.is_object());
}

#[tokio::test]
async fn key_add_prints_a_new_key_once_and_it_works() {
    let server = Server::start(&[]);
    let is_key = |k: &str| {
        k.len() == 64
            && k.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(is_key(&server.key), "{}", server.key);
    let full = server.add_key("acme", "full");
    let standard = server.add_key("acme", "standard");
    assert!(is_key(&full) && is_key(&standard));
    assert_ne!(full, standard);
    // Both keys belong to the same account, which is not `default`.
    let id = server
        .ok(
            "addWebhook",
            json!([full, webhook("https://acme.example.com/")]),
        )
        .await;
    assert_eq!(
        server.ok("getWebhookById", json!([standard, id])).await["id"],
        id
    );
    let (code, _) = server.err("getWebhookById", json!([server.key, id])).await;
    assert_eq!(code, 350);

    // `key list` names keys by prefix and never shows a key.
    let out = hookrpc(&server, &["key", "list"]);
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    for key in [&server.key, &full, &standard] {
        assert!(listing.contains(&key[..8]), "{listing}");
        assert!(
            !listing.contains(key.as_str()),
            "the key itself is never listed"
        );
    }
    assert!(
        listing.contains("acme") && listing.contains("standard"),
        "{listing}"
    );
    // The database holds no key either, only hashes.
    if on_postgres("the SQLite file holds no key") {
        return;
    }
    let db = std::fs::read(server.db_file()).unwrap();
    let wal = std::fs::read(server.db_file().with_extension("db-wal")).unwrap_or_default();
    for key in [&server.key, &full, &standard] {
        let needle = key.as_bytes();
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a key is stored in clear"
            );
        }
    }
}

#[tokio::test]
async fn a_revoked_key_is_300_at_once_and_other_keys_keep_working() {
    let server = Server::start(&[]);
    let doomed = server.add_key("default", "full");
    let id = server
        .ok(
            "addWebhook",
            json!([doomed, webhook("https://example.com/rev")]),
        )
        .await;
    let out = hookrpc(&server, &["key", "revoke", &doomed[..8]]);
    assert!(
        out.status.success(),
        "revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (method, params) in every_method(&doomed) {
        assert_300(&server, method, params).await;
    }
    // The account and its data are untouched; its other key still works.
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(w["id"], id);
    // `key list` shows it revoked.
    let out = hookrpc(&server, &["key", "list"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    let line = listing
        .lines()
        .find(|l| l.starts_with(&doomed[..8]))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(
        !line.trim_end().ends_with('-'),
        "revoked time shown: {line}"
    );
    // Revoking it again, or a prefix nobody has, fails and says so.
    let out = hookrpc(&server, &["key", "revoke", &doomed[..8]]);
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
    // The whole key works as a prefix too.
    let second = server.add_key("default", "standard");
    let out = hookrpc(&server, &["key", "revoke", &second]);
    assert!(out.status.success());
    assert_300(&server, "countWebhooks", json!([second])).await;
    // Still revoked after a restart.
    let mut server = server;
    server.restart();
    assert_300(&server, "countWebhooks", json!([doomed])).await;
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 1);
}

#[tokio::test]
async fn restart_prints_no_new_key_and_keeps_the_old_ones() {
    let mut server = Server::start(&[]);
    let first = server.key.clone();
    server.restart();
    assert_eq!(server.key, first);
    let out = hookrpc(&server, &["key", "list"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    let keys = listing.lines().filter(|l| l.contains("default")).count();
    assert_eq!(keys, 1, "one key for default after a restart: {listing}");
    assert_eq!(server.ok("countWebhooks", json!([first])).await, 0);
}

// ---------------------------------------------------------------------------------------------
// 399: per-key concurrency
// ---------------------------------------------------------------------------------------------

fn thousand_events() -> Value {
    let events: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"object": "contact", "event": "updated", "list_id": i % 7, "contact_id": i,
                        "data": {"n": i, "padding": "abcdefghijklmnopqrstuvwxyz"}})
        })
        .collect();
    Value::Array(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrent_call_limit_a_key_gets_399() {
    let server = Arc::new(Server::start(&["--max-concurrent-calls", "1"]));
    let bystander = server.add_key("default", "standard");
    let events = Arc::new(thousand_events());
    let mut succeeded = 0usize;
    let mut refused = 0usize;
    // Each round fires 50 calls of 1000 events at once for one key; a round in which the
    // calls happened not to overlap proves nothing, so a few rounds are allowed.
    for _round in 0..5 {
        let mut calls = tokio::task::JoinSet::new();
        // Another key calling one at a time meanwhile is never limited by the flood.
        let other = {
            let server = server.clone();
            let key = bystander.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let reply = server.rpc("countWebhooks", json!([key])).await;
                    assert_eq!(reply["result"], 0, "another key: {reply}");
                }
            })
        };
        for _ in 0..50 {
            let server = server.clone();
            let events = events.clone();
            calls.spawn(async move { server.rpc("addEvents", json!([server.key, *events])).await });
        }
        while let Some(reply) = calls.join_next().await {
            let reply = reply.expect("task");
            match reply.get("error") {
                None => {
                    assert_eq!(reply["result"].as_array().map(Vec::len), Some(1000));
                    succeeded += 1;
                }
                Some(e) => {
                    assert_eq!(e["code"], 399, "only 399 may fail: {reply}");
                    assert_eq!(
                        e["message"],
                        "You have reached the maximum number of allowed concurrent API requests"
                    );
                    assert_eq!(e["data"]["limit"], 1);
                    refused += 1;
                }
            }
        }
        other.await.expect("the other key was never refused");
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "50 concurrent calls never met the limit of 1");
    assert!(succeeded > 0, "the first call always gets through");
    // A refused call created nothing; the accepted ones all of theirs.
    let count = server.ok("countEvents", json!([server.key])).await;
    assert_eq!(count, json!(succeeded * 1000));
    // The slots were all given back: calls one at a time all succeed.
    for _ in 0..3 {
        server.ok("countWebhooks", json!([server.key])).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Transport: any content type, 413, 405
// ---------------------------------------------------------------------------------------------

/// A valid addWebhook request of exactly `size` bytes.
fn add_request_of_size(key: &str, size: usize) -> String {
    let body = |pad: usize| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "addWebhook",
               "params": [key, {"object": "list", "event": "created",
                                "url": format!("https://example.com/{size}"),
                                "metadata": {"pad": "x".repeat(pad)}}]})
        .to_string()
    };
    let bare = body(0).len();
    let sized = body(size - bare);
    assert_eq!(sized.len(), size);
    sized
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let server = Server::start(&["--max-body-bytes", "2000"]);
    let (status, text) = server
        .post_raw("/", add_request_of_size(&server.key, 2000))
        .await;
    assert_eq!(status, 200, "exactly the limit is fine: {text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert!(reply["result"].is_i64(), "{reply}");

    let (status, _) = server
        .post_raw("/", add_request_of_size(&server.key, 2001))
        .await;
    assert_eq!(status, 413);
    // A client that sends its whole body before reading reads the 413, rather than a broken
    // pipe: 8 MiB is more than the socket buffers hold, so the server must read it all.
    for _ in 0..3 {
        let (status, _) = server
            .post_raw(
                "/api/jsonrpcserver.php?version=3.3",
                "x".repeat(8 * 1024 * 1024),
            )
            .await;
        assert_eq!(status, 413);
    }
    // Without a Content-Length (chunked), the limit holds too, and the rest is read as well.
    let chunked = "x".repeat(8 * 1024 * 1024);
    let status = raw_http(
        &server,
        &format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunked}\r\n0\r\n\r\n",
            chunked.len()
        ),
    )
    .await;
    assert_eq!(status, 413);
    // A client that waits for `100 Continue` before it sends its body gets the 413 instead.
    let status = raw_http(
        &server,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\nExpect: 100-continue\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 413);
    // A declared length past what is worth reading is answered at once, body or not.
    let status = raw_http(
        &server,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 1);
}

#[tokio::test]
async fn the_default_body_limit_is_one_mib() {
    let server = Server::start(&[]);
    let (status, text) = server
        .post_raw("/", add_request_of_size(&server.key, 1024 * 1024))
        .await;
    // Within the transport limit; the metadata itself is over its own 4 KiB rule.
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["error"]["code"], 310, "{reply}");
    let (status, _) = server
        .post_raw("/", add_request_of_size(&server.key, 1024 * 1024 + 1))
        .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn bodies_past_the_memory_budget_are_503_until_one_is_answered() {
    let server = Server::start(&["--max-body-bytes", "2000", "--max-body-memory", "2000"]);
    // Headers alone hold nothing: the room is taken as the bytes arrive.
    let mut announced = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n";
    announced.write_all(head.as_bytes()).await.unwrap();
    // A call whose body stops one byte short holds 1999 bytes: the budget but one.
    let call = add_request_of_size(&server.key, 2000);
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&call.as_bytes()[..1999]).await.unwrap();
    eventually("the stalled body's room taken", WAIT, || async {
        let metrics = reqwest::get(format!("http://{}/metrics", server.addr))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metrics
            .contains("hookrpc_request_body_bytes 1999\n")
            .then_some(())
    })
    .await;
    let whole = |call: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{call}",
            call.len()
        )
    };
    // No other body fits.
    let count = json!({"jsonrpc": "2.0", "id": 1, "method": "countWebhooks",
                       "params": [server.key]});
    let reply = raw_reply(&server, &whole(&count.to_string())).await;
    let (head, body) = reply.split_once("\r\n\r\n").expect("a whole reply");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("retry-after: 1") && head.contains("connection: close"),
        "{reply}"
    );
    assert_transport_fault(503, JSON_UTF8, body, 503);
    assert!(body.contains("--max-body-memory"), "{body}");
    // A refused call changes nothing.
    let add = whole(&add_request_of_size(&server.key, 500));
    assert!(raw_reply(&server, &add).await.starts_with("HTTP/1.1 503"));
    // The last byte arrives: that call is served, and its room is free again.
    stalled.write_all(&call.as_bytes()[1999..]).await.unwrap();
    let mut reply = String::new();
    stalled.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 1);
    drop(announced);
}

#[test]
fn settings_that_contradict_each_other_are_refused_at_start() {
    let refused = [
        // A body of the largest size could never be taken in.
        (
            &["--max-body-bytes", "2000", "--max-body-memory", "1999"][..],
            "--max-body-memory (1999) must be at least --max-body-bytes (2000)",
        ),
        // A request could outlive its lease, and another node send the same delivery.
        (
            &["--lease", "3s"][..],
            "--lease (3s) must be at least twice --attempt-timeout (10s)",
        ),
        (
            &["--lease", "60s", "--attempt-timeout", "31s"][..],
            "--lease (1m) must be at least twice --attempt-timeout (31s)",
        ),
    ];
    for (flags, why) in refused {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hookrpc.db");
        let out = Command::new("timeout")
            .args(["20", binary().to_str().unwrap(), "serve"])
            .args(flags)
            .args(["--listen", "127.0.0.1:0", "--db", db.to_str().unwrap()])
            .output()
            .expect("run hookrpc");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(why), "{stderr}");
        assert!(!db.exists(), "nothing was created");
    }
}

/// A switch set in the environment takes the words deployments write (`1`, `yes`, `on`, …), not
/// only `true` and `false`: `HOOKRPC_ALLOW_PRIVATE_TARGETS=1` stopped the server from starting.
#[test]
fn switches_in_the_environment_take_yes_no_1_0_on_off() {
    let start = |env: &str, value: &str| {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hookrpc.db");
        // Settings that contradict each other: once the switches are read, start is refused
        // for them, before anything is created.
        let out = Command::new("timeout")
            .args(["20", binary().to_str().unwrap(), "serve", "--lease", "3s"])
            .args(["--listen", "127.0.0.1:0", "--db", db.to_str().unwrap()])
            .env(env, value)
            .output()
            .expect("run hookrpc");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for env in ["HOOKRPC_ALLOW_PRIVATE_TARGETS", "HOOKRPC_CATALOG_PRUNE"] {
        for value in ["1", "yes", "on", "true", "0", "no", "off", "false"] {
            let stderr = start(env, value);
            assert!(stderr.contains("--lease (3s)"), "{env}={value}: {stderr}");
        }
        let stderr = start(env, "maybe");
        assert!(stderr.contains("invalid value 'maybe'"), "{stderr}");
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_408() {
    let server = Server::start(&["--body-timeout", "1s"]);
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "addWebhook",
                      "params": [server.key, {"object": "list", "event": "created",
                                              "url": "https://example.com/slow"}]})
    .to_string();
    // The headers promise the whole call; half of it comes, then nothing. The server answers
    // and closes the connection. (Without a deadline it would wait for the rest for ever.)
    let stalled = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{}",
        call.len(),
        &call[..call.len() / 2]
    );
    // A body over the limit that stops arriving is read (and thrown away) until the same
    // deadline, then answered 413. It starts before the stalled call, so its deadline comes
    // first: by the time the call's 408 arrives, the 413 is here too. (Before, it was read for
    // 10 s whatever the deadline, and came long after the 408.)
    let oversized = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n{}",
        " ".repeat(1000)
    );
    let mut thrown_away = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    thrown_away.write_all(oversized.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reply = raw_reply(&server, &stalled).await;
    let (head, body) = reply.split_once("\r\n\r\n").expect("a whole reply");
    assert!(head.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    assert_transport_fault(408, JSON_UTF8, body, 408);
    assert!(body.contains("--body-timeout"), "{body}");
    // Read straight from the socket, not through the runtime's view of its readiness.
    let mut thrown_away = thrown_away.into_std().unwrap();
    let mut early = vec![0; 4096];
    let read = std::io::Read::read(&mut thrown_away, &mut early);
    let early = String::from_utf8_lossy(&early[..*read.as_ref().unwrap_or(&0)]);
    assert!(
        early.starts_with("HTTP/1.1 413"),
        "the oversized body, stalled first, is answered first: {read:?} {early}"
    );
    // The call never ran; the same call sent whole, in pieces, is served.
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 0);
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        call.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in call.as_bytes().chunks(call.len() / 3 + 1) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 1);
}

#[test]
fn a_timeout_lease_or_interval_of_zero_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookrpc.db");
    for flag in [
        "--body-timeout",
        "--attempt-timeout",
        "--connect-timeout",
        "--circuit-probe-interval",
        "--lease",
    ] {
        // `timeout` stops a server that started after all (exit 124).
        let out = Command::new("timeout")
            .args(["20", binary().to_str().unwrap(), "serve", flag, "0s"])
            .args(["--listen", "127.0.0.1:0", "--db", db.to_str().unwrap()])
            .output()
            .expect("run hookrpc");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} 0s: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("must be longer than 0"),
            "{stderr}"
        );
    }
    assert!(!db.exists(), "nothing was created");
}

/// Sends `request` as is over a new connection; returns what comes back until the server
/// closes it (within a minute: a request the server never answers fails the test rather
/// than hanging it).
async fn raw_reply(server: &Server, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    // A reset after the reply (an unread body) is no failure: what was read is kept.
    let read = stream.read_to_end(&mut reply);
    let _ = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the server answers and closes the connection");
    String::from_utf8_lossy(&reply).into_owned()
}

/// Sends `request` as is over a new connection; returns the status of the reply.
async fn raw_http(server: &Server, request: &str) -> u16 {
    let text = raw_reply(server, request).await;
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"))
}

/// What every reply to a POST carries, whatever the dialect, the id or the outcome.
/// Longest a test waits for what must happen.
const WAIT: Duration = Duration::from_secs(60);

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// A transport fault: its status, a JSON body saying why, and the JSON content type.
fn assert_transport_fault(status: u16, content_type: &str, text: &str, expected: u16) {
    assert_eq!(status, expected, "{text}");
    assert_eq!(content_type, JSON_UTF8, "HTTP {status}");
    let reply: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("HTTP {status}: not JSON ({e}): {text:?}"));
    assert_eq!(reply["error"]["code"], expected, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{reply}"
    );
    assert!(reply.get("jsonrpc").is_none(), "{reply}");
}

#[tokio::test]
async fn a_json_body_is_a_call_whatever_its_content_type_says() {
    // PHP servers read php://input whatever the header says, and clients rely on it: tinyrpc
    // sends text/plain, a forgotten header makes PHP's curl send form-urlencoded.
    let server = Server::start(&[]);
    let path = "/api/jsonrpcserver.php?version=3.3";
    let content_types = [
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("application/json;charset=UTF-8"),
        Some("application/json; charset=iso-8859-1"),
        Some("application/json-rpc"),
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("text/json"),
        Some(""),
    ];
    for (i, content_type) in content_types.iter().enumerate() {
        for (dialect, body) in [
            (
                "2.0",
                json!({"jsonrpc": "2.0", "id": i, "method": "addWebhook",
                       "params": [server.key, webhook(&format!("https://example.com/ct{i}"))]}),
            ),
            (
                "Vision6",
                json!({"id": i, "method": "addWebhook",
                       "params": [server.key, webhook(&format!("https://example.com/v6ct{i}"))]}),
            ),
        ] {
            let (status, reply_type, text) =
                server.post_as(path, *content_type, body.to_string()).await;
            assert_eq!(status, 200, "{content_type:?} {dialect}: {text}");
            assert_eq!(reply_type, JSON_UTF8, "{content_type:?} {dialect}");
            let reply: Value = serde_json::from_str(&text).unwrap();
            assert!(
                reply["result"].is_i64(),
                "{content_type:?} {dialect}: {reply}"
            );
        }
    }
    assert_eq!(
        server.ok("countWebhooks", json!([server.key])).await,
        2 * content_types.len()
    );
    // A body that is no JSON is still a call that failed to parse, not a transport fault.
    let (status, reply_type, text) = server
        .post_as(path, Some("application/x-www-form-urlencoded"), "a=1&b=2")
        .await;
    assert_eq!((status, reply_type.as_str()), (200, JSON_UTF8), "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["error"]["code"], 100, "{reply}");
}

#[tokio::test]
async fn a_wrong_verb_is_405_with_a_json_body() {
    let server = Server::start(&[]);
    let client = reqwest::Client::new();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "addWebhook",
                      "params": [server.key, webhook("https://example.com/verb")]})
    .to_string();
    let mut requests = vec![];
    for path in ["/", "/api/jsonrpcserver.php?version=3.3"] {
        requests.push(client.get(format!("http://{}{path}", server.addr)));
    }
    for verb in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        requests.push(
            client
                .request(verb, format!("http://{}/", server.addr))
                .header("content-type", "application/json")
                .body(body.clone()),
        );
    }
    for request in requests {
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        let text = r.text().await.unwrap();
        assert_transport_fault(status, &content_type, &text, 405);
        assert_eq!(allow.as_deref(), Some("POST"));
    }
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 0);
}

#[tokio::test]
async fn an_oversized_body_is_413_with_a_json_body() {
    let server = Server::start(&["--max-body-bytes", "2000"]);
    for content_type in [Some("application/json"), Some("text/plain"), None] {
        let (status, reply_type, text) = server
            .post_as("/", content_type, add_request_of_size(&server.key, 2001))
            .await;
        assert_transport_fault(status, &reply_type, &text, 413);
    }
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 0);
}

#[tokio::test]
async fn a_batch_runs_its_entries_one_at_a_time_within_the_limit() {
    let server = Server::start(&["--max-concurrent-calls", "1"]);
    let batch: Vec<Value> = (0..20)
        .map(|i| {
            json!({"jsonrpc": "2.0", "id": i, "method": "addWebhook",
                   "params": [server.key, webhook(&format!("https://example.com/b{i}"))]})
        })
        .collect();
    let (status, text) = server.post_raw("/", Value::Array(batch).to_string()).await;
    assert_eq!(status, 200);
    let replies: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(replies.len(), 20);
    for r in &replies {
        assert!(r["result"].is_i64(), "{r}");
    }
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 20);
}
