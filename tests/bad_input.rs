//! Bad input at scale. A property test throws arbitrary JSON — as whole bodies, as requests of
//! both dialects with real and made-up method names, as params, details and search criteria —
//! at one live server: every answer is HTTP 200 (empty for notifications) carrying well-formed
//! JSON-RPC replies with documented codes, and never an internal error. Then the extremes:
//! deep nesting, huge arrays, invalid UTF-8, a 10k-entry batch, and slow clients.

mod common;
use common::*;
use hookrpc::api::METHODS;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Every code API.md documents for a bad request (100 only as the Vision6 parse error).
const DOCUMENTED: &[i64] = &[
    300, 310, 311, 321, 350, 351, 352, 353, 355, 399, 104, -32700, -32600, -32601,
];

/// Values that are not names in the contract but make random input reach deeper: a valid
/// secret, URLs good and bad, an injection attempt, a reserved header name.
const VALUES: &[&str] = &[
    hookrpc::model::PING_EVENT,
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "https://example.com/fuzz",
    "http://",
    "ftp://x",
    "' OR 1=1 --",
    "",
    "x-h",
    "host",
];

/// Words that make random input reach deeper into the validator and the search parser: every
/// property name and enumerated value of the contract (schema/openrpc.json), so the fuzzer
/// follows the contract as it changes, plus [`VALUES`]. Read once: proptest builds its
/// strategies again for every case.
static VOCABULARY: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(vocabulary);

fn vocabulary() -> Vec<String> {
    fn walk(v: &Value, words: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("properties", Value::Object(props)) => words.extend(props.keys().cloned()),
                        ("enum", Value::Array(items)) => {
                            words.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
                        }
                        _ => {}
                    }
                    walk(value, words);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, words)),
            _ => {}
        }
    }
    let document: Value = serde_json::from_str(hookrpc::api::OPENRPC).unwrap();
    let mut words: Vec<String> = VALUES.iter().map(|v| v.to_string()).collect();
    walk(&document, &mut words);
    words.sort();
    words.dedup();
    words
}

#[test]
fn the_vocabulary_holds_the_contracts_names() {
    let words = &*VOCABULARY;
    for name in [
        "headers",
        "idempotency_key",
        "username",
        "bulk_updated",
        "exactly",
        "DESC",
    ] {
        assert!(words.iter().any(|w| w == name), "{name} missing");
    }
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(VOCABULARY.as_slice()),
        1 => "\\PC{0,12}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-3i64..1200).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((word(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One request: a method (real or not), params (positional with a real key, by name, or
/// anything), in either dialect, with any id.
fn request(key: String) -> impl Strategy<Value = Value> {
    let names: Vec<&'static str> = METHODS.iter().map(|m| m.name).collect();
    let method = prop_oneof![
        4 => proptest::sample::select(names).prop_map(Value::from),
        1 => json_value(),
    ];
    let params = prop_oneof![
        proptest::collection::vec(json_value(), 0..5).prop_map(move |mut rest| {
            rest.insert(0, json!(key));
            Value::Array(rest)
        }),
        proptest::collection::vec((word(), json_value()), 0..5)
            .prop_map(|kv| { Value::Object(kv.into_iter().collect::<Map<_, _>>()) }),
        json_value(),
    ];
    let id = prop_oneof![
        Just(None),
        (0u32..1000).prop_map(|n| Some(json!(n))),
        json_value().prop_map(Some),
    ];
    (method, params, id, any::<bool>()).prop_map(|(method, params, id, v2)| {
        let mut r = Map::new();
        if v2 {
            r.insert("jsonrpc".into(), json!("2.0"));
        }
        r.insert("method".into(), method);
        r.insert("params".into(), params);
        if let Some(id) = id {
            r.insert("id".into(), id);
        }
        Value::Object(r)
    })
}

fn body(key: String) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => request(key.clone()).prop_map(|r| r.to_string()),
        2 => proptest::collection::vec(request(key), 1..5).prop_map(|b| Value::Array(b).to_string()),
        1 => json_value().prop_map(|v| v.to_string()),
    ]
}

/// A reply is one of the two dialects' shapes, with a documented code if it is an error.
fn check_reply(reply: &Value) -> Result<(), String> {
    let obj = reply.as_object().ok_or("a reply is an object")?;
    if !obj.contains_key("id") {
        return Err("a reply has an id".into());
    }
    let error = match obj.get("jsonrpc") {
        Some(v) if v == "2.0" => {
            if obj.contains_key("result") == obj.contains_key("error") {
                return Err("a 2.0 reply has result xor error".into());
            }
            obj.get("error")
        }
        Some(_) => return Err("jsonrpc is 2.0 or absent".into()),
        None => {
            let (result, error) = (&obj["result"], &obj["error"]);
            if result.is_null() == error.is_null() {
                return Err("a Vision6 reply has a null result or a null error".into());
            }
            (!error.is_null()).then_some(error)
        }
    };
    let Some(error) = error else { return Ok(()) };
    let code = error["code"]
        .as_i64()
        .ok_or("an error has an integer code")?;
    if error["message"].as_str().is_none_or(str::is_empty) {
        return Err("an error has a message".into());
    }
    let v1_parse_error = code == 100
        && obj.get("jsonrpc").is_none()
        && error["data"]
            .as_str()
            .is_some_and(|d| d.starts_with("parse error"));
    if DOCUMENTED.contains(&code) || v1_parse_error {
        Ok(())
    } else {
        Err(format!("undocumented code {code}"))
    }
}

fn check_body(status: u16, text: &str) -> Result<(), String> {
    match status {
        // A notification (or a batch of them only): nothing to answer, and still HTTP 200.
        200 if text.is_empty() => Ok(()),
        200 => {
            let reply: Value =
                serde_json::from_str(text).map_err(|e| format!("reply is not JSON: {e}"))?;
            match &reply {
                Value::Array(items) if !items.is_empty() => items.iter().try_for_each(check_reply),
                single => check_reply(single),
            }
        }
        other => Err(format!("HTTP {other}")),
    }
}

#[test]
fn arbitrary_json_always_gets_a_well_formed_reply_with_a_documented_code() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Without --allow-private-targets, and the only well-formed URL the inputs can hold is
    // example.com, which is always refused: whatever the fuzzer registers sends nothing.
    let server = Server::start(&["--max-concurrent-calls", "1000"]);
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&body(server.key.clone()), |body| {
            let (status, text) = runtime.block_on(server.post_raw("/", body.clone()));
            check_body(status, &text)
                .map_err(|e| TestCaseError::fail(format!("{e}\nrequest: {body}\nreply: {text}")))
        })
        .unwrap();
    // And the server is still well.
    runtime.block_on(async {
        assert!(server
            .ok("countWebhooks", json!([server.key]))
            .await
            .is_u64());
    });
    assert!(!server.stderr().contains("panicked"));
}

#[tokio::test]
async fn no_valid_request_at_all_is_told_so_even_without_an_id() {
    let server = Server::start(&[]);
    for body in [r#"{"jsonrpc":"2.0"}"#, r#"{"jsonrpc":"2.0","params":[]}"#] {
        let (status, text) = server.post_raw("/", body).await;
        assert_eq!(status, 200, "{body}");
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["error"]["code"], -32600, "{body}: {reply}");
        assert_eq!(reply["id"], Value::Null);
    }
    // A real notification still gets nothing, with HTTP 200 (some clients fail on a 204).
    let notification = r#"{"jsonrpc":"2.0","method":"noSuchMethod"}"#;
    assert_eq!(
        server.post_raw("/", notification).await,
        (200, String::new())
    );
}

#[tokio::test]
async fn extremes_get_clean_errors_and_the_server_keeps_serving() {
    // Room for a 10k-entry batch of real calls.
    let server = Server::start(&["--max-body-bytes", "4194304"]);
    let key = server.key.clone();

    // 100k nested arrays: a parse error (serde_json's recursion limit), no stack overflow.
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let (status, text) = server.post_raw("/", deep).await;
    assert_eq!(status, 200);
    check_body(status, &text).unwrap();
    // Nesting inside a valid request's data.
    let nested = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"addEvent","params":["{key}",{{"object":"list","event":"created","data":{{"x":{}1{}}}}}]}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let (status, text) = server.post_raw("/", nested).await;
    check_body(status, &text).unwrap();
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["error"]["code"], 310, "{reply}");
    assert_eq!(reply["error"]["data"][0]["field"], "params");

    // A huge array where a few items are expected: one 310, not one problem per item.
    let items: Vec<Value> = (0..100_000).map(|_| json!({})).collect();
    let (code, data) = server.err("addEvents", json!([key, items])).await;
    assert_eq!(code, 310);
    assert!(data.as_array().unwrap().len() <= 10, "{data:.300}");
    let headers: Vec<Value> = (0..50_000)
        .map(|i| json!({"name": format!("x-{i}"), "value": "v"}))
        .collect();
    let details = json!({"object": "list", "event": "created", "url": "https://example.com/h", "headers": headers});
    assert_eq!(server.err("addWebhook", json!([key, details])).await.0, 310);

    // Invalid UTF-8: a parse error in either dialect.
    let (status, text) = server
        .post_raw(
            "/",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\xff\xfe\"}".to_vec(),
        )
        .await;
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    let (_, text) = server
        .post_raw("/", b"{\"id\":1,\"method\":\"\xc0\"}".to_vec())
        .await;
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["error"]["code"], 100, "{reply}");

    // A 10k-entry batch: past the batch limit, one clean error; nothing ran.
    let batch: Vec<Value> = (0..10_000)
        .map(|i| {
            json!({"jsonrpc": "2.0", "id": i, "method": "addEvent",
                        "params": [key, {"object": "list", "event": "created"}]})
        })
        .collect();
    let (status, text) = server.post_raw("/", Value::Array(batch).to_string()).await;
    assert_eq!(status, 200);
    check_body(status, &text).unwrap();
    assert!(text.contains("-32600"), "{text}");
    assert_eq!(server.ok("countEvents", json!([key])).await, 0);

    assert_eq!(server.ok("countWebhooks", json!([key])).await, 0);
}

/// Slowloris: connections that dribble a request byte by byte must not stop the server from
/// answering everyone else.
#[tokio::test]
async fn a_nul_character_is_refused_alike_on_both_backends_and_changes_nothing() {
    // PostgreSQL's text cannot hold U+0000: there it was an internal error (100), while
    // SQLite stored it, and such a database could not be migrated.
    let server = Server::start(&[]);
    let key = &server.key;
    let nul_key = json!({"object": "contact", "event": "created", "idempotency_key": "a\u{0}b"});
    let refused = [
        ("addEvent", json!([key, nul_key]), 310, "idempotency_key"),
        (
            "addEvents",
            json!([key, [{"object": "contact", "event": "created", "idempotency_key": "ok1"},
                         nul_key]]),
            310,
            "events[1].idempotency_key",
        ),
        (
            "addWebhook",
            json!([key, {"object": "contact", "event": "created",
                         "url": "https://example.com/h", "description": "x\u{0}y"}]),
            310,
            "description",
        ),
        (
            "searchWebhooks",
            json!([key, [["name", "exactly", "a\u{0}"]]]),
            311,
            "NUL",
        ),
        (
            "searchEvents",
            json!([key, [["idempotency_key", "starts_with", "a\u{0}"]]]),
            311,
            "NUL",
        ),
        (
            "retryDeliveries",
            json!([key, [["last_error", "contains", "\u{0}"]]]),
            311,
            "NUL",
        ),
    ];
    for (method, params, code, named) in refused {
        let (got, data) = server.err(method, params).await;
        assert_eq!(got, code, "{method}: {data}");
        assert!(data.to_string().contains(named), "{method}: {data}");
    }
    assert_eq!(server.ok("countEvents", json!([key])).await, 0);
    assert_eq!(server.ok("countWebhooks", json!([key])).await, 0);
    // The other event's key was not used up by the refused call.
    let event = json!({"object": "contact", "event": "created", "idempotency_key": "ok1"});
    server.ok("addEvent", json!([key, event])).await;
    assert_eq!(server.ok("countEvents", json!([key])).await, 1);
    // Inside data, a NUL is JSON's escape, kept as such: delivered as given.
    let data = json!({"object": "contact", "event": "created", "data": {"s": "a\u{0}b"}});
    server.ok("addEvent", json!([key, data])).await;
}

#[tokio::test]
async fn slow_clients_do_not_hold_up_others() {
    let server = Server::start(&[]);
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let dribble = tokio::spawn(async move {
        for _ in 0..20 {
            for stream in &mut slow {
                let _ = stream.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slow
    });
    for _ in 0..20 {
        assert!(server
            .ok("countWebhooks", json!([server.key]))
            .await
            .is_u64());
    }
    drop(dribble.await.unwrap());
    assert!(server
        .ok("countWebhooks", json!([server.key]))
        .await
        .is_u64());
}
