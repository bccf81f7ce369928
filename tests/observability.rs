//! /health, /metrics and structured logs, as an operator sees them.

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn health_answers_ok_while_the_database_is_open() {
    let server = Server::start(&[]);
    let r = reqwest::get(format!("http://{}/health", server.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body, json!({"status": "ok"}));
    // HEAD answers the same, without the body.
    let r = reqwest::Client::new()
        .head(format!("http://{}/health", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code_and_show_the_queue() {
    let server = Server::start(&[]);
    server
        .ok(
            "addWebhook",
            json!([server.key, webhook("https://example.com/m")]),
        )
        .await;
    server.err("getWebhookById", json!([server.key, 999])).await;
    // No webhook matches this event, so nothing is sent anywhere.
    server
        .ok(
            "addEvent",
            json!([server.key, {"object": "contact", "event": "unsubscribed"}]),
        )
        .await;
    let text = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"hookrpc_calls_total{method="addWebhook",code="ok"} 1"#,
        r#"hookrpc_calls_total{method="getWebhookById",code="350"} 1"#,
        "hookrpc_call_duration_seconds_bucket{method=\"addWebhook\"",
        "hookrpc_pending_deliveries",
        "hookrpc_oldest_pending_delivery_age_seconds",
        "hookrpc_open_circuits 0",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
}

#[tokio::test]
async fn json_logs_carry_method_request_id_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--db",
        ])
        .arg(dir.path().join("h.db"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let key = lines
        .next()
        .unwrap()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let addr = lines
        .next()
        .unwrap()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let text = reqwest::Client::new()
        .post(format!("http://{addr}/"))
        .header("content-type", "application/json")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "getWebhookById", "params": [key, 42]})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["error"]["code"], 350);
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    let call = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "call")
        .unwrap_or_else(|| panic!("no JSON call line in:\n{log}"));
    assert_eq!(call["span"]["method"], "getWebhookById");
    assert_eq!(call["code"], 350);
    assert_eq!(call["span"]["request_id"].as_str().map(str::len), Some(16));
    assert!(!log.contains(&key), "the API key must never be logged");
}

/// RUST_LOG is the operator's: `warn` means no debug lines from anyone (jsonrpsee included),
/// and even `trace` never lets jsonrpsee print its TRACE lines, which carry request bodies.
#[tokio::test]
async fn the_log_level_holds_for_jsonrpsee_too() {
    for (level, forbidden) in [
        ("warn", &[" DEBUG ", " TRACE "][..]),
        ("trace", &[" TRACE jsonrpsee"][..]),
    ] {
        let server = Server::start_logging(&[], level);
        server.err("getWebhookById", json!([server.key, 42])).await;
        // A client that hangs up mid-request: jsonrpsee reports it at DEBUG.
        let mut half = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        half.write_all(b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 100\r\n\r\n{")
            .await
            .unwrap();
        drop(half);
        server.ok("countWebhooks", json!([server.key])).await;
        let logs = server.stderr();
        for needle in forbidden {
            assert!(
                !logs.contains(needle),
                "RUST_LOG={level}: {needle:?} in\n{logs:.3000}"
            );
        }
    }
}
