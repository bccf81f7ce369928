//! Two dialects, one server: Vision6 (JSON-RPC 1.0 style, no `jsonrpc` member) and strict
//! JSON-RPC 2.0 with batches and notifications; positional and by-name params; arity and
//! top-level types answered with 310, never -32602.
mod common;
use common::*;
use serde_json::{json, Value};

/// The endpoint the Vision6 PHP client is configured with.
const V6: &str = "/api/jsonrpcserver.php?version=3.3";

/// POSTs `body` to `path`; the reply must be HTTP 200 with a JSON body.
async fn post(server: &Server, path: &str, body: Value) -> Value {
    let (status, text) = server.post_raw(path, body.to_string()).await;
    assert_eq!(status, 200, "{body}: HTTP {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{body}: bad JSON {e}: {text}"))
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

async fn event_count(server: &Server) -> i64 {
    server
        .ok("countEvents", json!([server.key]))
        .await
        .as_i64()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Vision6 dialect
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn vision6_requests_get_vision6_replies() {
    let server = Server::start(&[]);
    let reply = post(
        &server,
        V6,
        json!({"id": 1, "method": "addWebhook", "params": [server.key, webhook("https://example.com/v6")]}),
    )
    .await;
    assert_eq!(keys(&reply), ["error", "id", "result"], "{reply}");
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["error"], Value::Null);
    let id = reply["result"].as_i64().expect("the new id");
    assert!(id > 0);

    // The webhook is really there, as any dialect sees it.
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(w["url"], "https://example.com/v6");

    // A string id is echoed; a Webhook comes back whole.
    let reply = post(
        &server,
        "/api/jsonrpcserver",
        json!({"id": "req-7", "method": "getWebhookById", "params": [server.key, id]}),
    )
    .await;
    assert_eq!(keys(&reply), ["error", "id", "result"]);
    assert_eq!(reply["id"], "req-7");
    assert_eq!(reply["error"], Value::Null);
    assert_eq!(reply["result"], w);

    // Any path works.
    for path in ["/", "/anything/else", "/api/jsonrpcserver.php?version=3.0"] {
        let reply = post(
            &server,
            path,
            json!({"id": 3, "method": "countWebhooks", "params": [server.key]}),
        )
        .await;
        assert_eq!(
            reply,
            json!({"id": 3, "result": 1, "error": null}),
            "{path}"
        );
    }
}

#[tokio::test]
async fn vision6_errors_have_a_null_result_and_vision6_codes() {
    let server = Server::start(&[]);
    let reply = post(
        &server,
        V6,
        json!({"id": 2, "method": "addWebhook", "params": [server.key, {"object": "contact"}]}),
    )
    .await;
    assert_eq!(reply["id"], 2);
    assert_eq!(reply["result"], Value::Null);
    assert!(reply.get("jsonrpc").is_none(), "{reply}");
    assert_eq!(reply["error"]["code"], 310);
    assert_eq!(reply["error"]["message"], "Invalid Method Parameters");
    let fields: Vec<&Value> = reply["error"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["field"])
        .collect();
    assert!(
        fields.contains(&&json!("event")) && fields.contains(&&json!("url")),
        "{reply}"
    );

    let reply = post(
        &server,
        V6,
        json!({"id": 3, "method": "getWebhookById", "params": ["not-a-key", 1]}),
    )
    .await;
    assert_eq!(reply["result"], Value::Null);
    assert_eq!(reply["error"]["code"], 300);
    assert_eq!(
        reply["error"]["message"],
        "Authorisation Failed - Invalid API Key"
    );

    let reply = post(
        &server,
        V6,
        json!({"id": 4, "method": "getWebhookById", "params": [server.key, 77]}),
    )
    .await;
    assert_eq!(reply["id"], 4);
    assert_eq!(reply["result"], Value::Null);
    assert_eq!(reply["error"]["code"], 350);
    assert_eq!(reply["error"]["message"], "Unable to Load Webhook");
}

#[tokio::test]
async fn method_not_found_is_104_for_vision6_and_minus_32601_for_2_0() {
    let server = Server::start(&[]);
    let reply = post(
        &server,
        V6,
        json!({"id": 5, "method": "addWebhok", "params": [server.key]}),
    )
    .await;
    assert_eq!(reply["id"], 5);
    assert_eq!(reply["result"], Value::Null);
    assert_eq!(reply["error"]["code"], 104);
    assert_eq!(reply["error"]["message"], "Method Not Found");

    let reply = server.rpc("addWebhok", json!([server.key])).await;
    assert_eq!(reply["jsonrpc"], "2.0");
    assert_eq!(reply["error"]["code"], -32601);
    assert!(reply.get("result").is_none());
}

#[tokio::test]
async fn parse_errors_are_100_for_vision6_and_minus_32700_for_2_0() {
    let server = Server::start(&[]);
    let (status, text) = server.post_raw(V6, "{\"id\":1,\"method\":").await;
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["result"], Value::Null);
    assert_eq!(reply["error"]["code"], 100);
    assert_eq!(reply["id"], Value::Null);

    let (status, text) = server
        .post_raw("/", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":")
        .await;
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    assert!(reply.get("result").is_none());
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC 2.0
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn replies_to_2_0_have_result_xor_error() {
    let server = Server::start(&[]);
    let ok = server
        .rpc(
            "addWebhook",
            json!([server.key, webhook("https://example.com/x")]),
        )
        .await;
    assert_eq!(keys(&ok), ["id", "jsonrpc", "result"], "{ok}");
    assert_eq!(ok["jsonrpc"], "2.0");
    let err = server.rpc("getWebhookById", json!([server.key, 999])).await;
    assert_eq!(keys(&err), ["error", "id", "jsonrpc"], "{err}");
    assert_eq!(err["error"]["code"], 350);
}

#[tokio::test]
async fn batches_mix_successes_and_errors() {
    let server = Server::start(&[]);
    let existing = server
        .ok(
            "addWebhook",
            json!([server.key, webhook("https://example.com/b0")]),
        )
        .await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "addWebhook", "params": [server.key, webhook("https://example.com/b1")]},
        {"jsonrpc": "2.0", "id": 2, "method": "getWebhookById", "params": [server.key, 424242]},
        {"jsonrpc": "2.0", "id": "three", "method": "noSuchMethod", "params": []},
        {"jsonrpc": "2.0", "id": 4, "method": "getWebhookById", "params": [server.key, existing]},
        {"jsonrpc": "2.0", "id": 5, "method": "addWebhook", "params": [server.key, {"url": 1}]},
        {"jsonrpc": "2.0", "id": 6, "method": "countWebhooks", "params": {"api_key": server.key}},
        {"jsonrpc": "2.0", "id": 7, "method": "getWebhookById", "params": ["bad-key", existing]},
    ]);
    let reply = post(&server, "/", batch).await;
    let replies = reply.as_array().expect("a batch gets an array");
    assert_eq!(replies.len(), 7, "{reply}");
    let by_id = |id: Value| {
        replies
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no reply for {id}: {reply}"))
            .clone()
    };
    for r in replies {
        assert_eq!(r["jsonrpc"], "2.0");
        assert!(r.get("result").is_some() != r.get("error").is_some(), "{r}");
    }
    let new_id = by_id(json!(1))["result"].as_i64().expect("added");
    assert_eq!(by_id(json!(2))["error"]["code"], 350);
    assert_eq!(by_id(json!("three"))["error"]["code"], -32601);
    assert_eq!(by_id(json!(4))["result"]["id"], existing);
    assert_eq!(by_id(json!(5))["error"]["code"], 310);
    // Entries run in order: the count sees the add of entry 1.
    assert_eq!(by_id(json!(6))["result"], 2);
    assert_eq!(by_id(json!(7))["error"]["code"], 300);
    let w = server
        .ok("getWebhookById", json!([server.key, new_id]))
        .await;
    assert_eq!(w["url"], "https://example.com/b1");
}

#[tokio::test]
async fn a_notification_runs_but_gets_no_reply_body() {
    let server = Server::start(&[]);
    assert_eq!(event_count(&server).await, 0);
    let (status, text) = server
        .post_raw(
            "/",
            json!({"jsonrpc": "2.0", "method": "addEvent",
                   "params": [server.key, {"object": "contact", "event": "created", "contact_id": 9}]})
            .to_string(),
        )
        .await;
    // 200, not 204: jsonrpclib-pelix and others treat any status but 200 as a failure.
    assert_eq!(
        (status, text.as_str()),
        (200, ""),
        "no reply for a lone notification"
    );
    // The event was stored before the (empty) answer.
    assert_eq!(event_count(&server).await, 1);
    let found = server.ok("searchEvents", json!([server.key])).await;
    assert_eq!(found[0]["contact_id"], 9);

    // A failing notification gets no reply either, and creates nothing.
    let (status, text) = server
        .post_raw(
            "/",
            json!({"jsonrpc": "2.0", "method": "addEvent", "params": [server.key, {"object": "dog"}]})
                .to_string(),
        )
        .await;
    assert_eq!((status, text.as_str()), (200, ""));
    assert_eq!(event_count(&server).await, 1);

    // In a batch, notifications run and only the calls are answered.
    let batch = json!([
        {"jsonrpc": "2.0", "method": "addEvent", "params": [server.key, {"object": "list", "event": "created"}]},
        {"jsonrpc": "2.0", "id": 10, "method": "countEvents", "params": [server.key]},
        {"jsonrpc": "2.0", "method": "addEvent", "params": [server.key, {"object": "list", "event": "updated"}]},
    ]);
    let reply = post(&server, "/", batch).await;
    let replies = reply.as_array().unwrap();
    assert_eq!(replies.len(), 1, "{reply}");
    assert_eq!(replies[0]["id"], 10);
    assert_eq!(replies[0]["result"], 2);
    assert_eq!(event_count(&server).await, 3);

    // A batch of notifications only: no reply body at all.
    let batch = json!([
        {"jsonrpc": "2.0", "method": "addEvent", "params": [server.key, {"object": "list", "event": "removed"}]},
    ]);
    let (status, text) = server.post_raw("/", batch.to_string()).await;
    assert_eq!((status, text.as_str()), (200, ""));
    assert_eq!(event_count(&server).await, 4);
}

#[tokio::test]
async fn unusual_ids_are_echoed_not_treated_as_notifications() {
    let server = Server::start(&[]);
    for id in [json!(-1), json!(1.5), json!(0), json!(""), json!(u64::MAX)] {
        let reply = post(
            &server,
            "/",
            json!({"jsonrpc": "2.0", "id": id, "method": "countWebhooks", "params": [server.key]}),
        )
        .await;
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(reply["result"], 0, "{reply}");
    }
}

/// A reply read the way a client that keeps ids as text reads it: each member's JSON text, so
/// an id can be compared byte for byte (and a lone surrogate is no error).
type Members = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;

/// POSTs `body`; the reply must be HTTP 200 and parse as `T`.
async fn post_text<T: serde::de::DeserializeOwned>(server: &Server, body: &str) -> T {
    let (status, text) = server.post_raw(V6, body.to_owned()).await;
    assert_eq!(status, 200, "{body}: HTTP {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{body}: {e}: reply {text:?}"))
}

/// Ids that JSON-RPC 2.0 allows, as the text a client may send: each must come back as is. An
/// adversarial run got HTTP 200 with the body `null` for some and changed numbers for others.
const ODD_IDS: &[&str] = &[
    "1e400",
    "-1e400",
    "1E-400",
    "-0",
    "1.50",
    "0.0",
    "1e2",
    "-1",
    "0",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "null",
    r#""\ud800""#,
    r#""tail \udc00""#,
    r#""\u0041""#,
    r#""a\"b\\c\/""#,
    r#""é""#,
    r#""""#,
];

/// Ids that JSON-RPC 2.0 forbids (object, array, boolean), deeply nested ones included.
fn forbidden_ids() -> Vec<String> {
    let mut ids: Vec<String> = ["{}", r#"{"a":1}"#, "[]", "[1]", "true", "false"]
        .map(String::from)
        .into();
    ids.push(format!("{}1{}", "[".repeat(200), "]".repeat(200)));
    ids.push(format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200)));
    ids
}

fn code(reply: &Members) -> i64 {
    let error: Value = serde_json::from_str(reply["error"].get()).unwrap();
    error["code"].as_i64().unwrap()
}

#[tokio::test]
async fn every_2_0_request_gets_a_2_0_reply_with_its_number_as_sent() {
    let server = Server::start(&[]);
    let call = |id: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"countWebhooks","params":["{}"]}}"#,
            server.key
        )
    };
    for id in ODD_IDS {
        let reply: Members = post_text(&server, &call(id)).await;
        assert_eq!(reply["jsonrpc"].get(), r#""2.0""#, "{id}");
        assert_eq!(reply["id"].get(), *id);
        assert_eq!(reply["result"].get(), "0", "{id}");
    }
    for id in forbidden_ids() {
        let reply: Members = post_text(&server, &call(&id)).await;
        assert_eq!(reply["jsonrpc"].get(), r#""2.0""#, "{id}");
        assert_eq!(reply["id"].get(), "null", "{id}");
        assert_eq!(code(&reply), -32600, "{id}");
    }
    // Two ids: no telling which one the client looks for.
    let twice = format!(
        r#"{{"jsonrpc":"2.0","id":1,"id":2,"method":"countWebhooks","params":["{}"]}}"#,
        server.key
    );
    let reply: Members = post_text(&server, &twice).await;
    assert_eq!(reply["id"].get(), "null");
    assert_eq!(code(&reply), -32600);

    // All at once in a batch: one reply each, each with its own id.
    let forbidden = forbidden_ids();
    let ids: Vec<&str> = ODD_IDS
        .iter()
        .copied()
        .chain(forbidden.iter().map(String::as_str))
        .collect();
    let batch = format!(
        "[{},{twice}]",
        ids.iter().map(|id| call(id)).collect::<Vec<_>>().join(",")
    );
    let replies: Vec<Members> = post_text(&server, &batch).await;
    assert_eq!(replies.len(), ids.len() + 1);
    let mut echoed: Vec<&str> = replies.iter().map(|r| r["id"].get()).collect();
    let mut expected: Vec<&str> = ODD_IDS.to_vec();
    expected.extend(std::iter::repeat_n("null", forbidden.len() + 1));
    echoed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(echoed, expected);
    assert!(replies.iter().all(|r| r["jsonrpc"].get() == r#""2.0""#));
}

#[tokio::test]
async fn vision6_replies_echo_any_id_as_sent_and_never_carry_jsonrpc() {
    let server = Server::start(&[]);
    let forbidden = forbidden_ids();
    let call = |id: &str| {
        format!(
            r#"{{"id":{id},"method":"countWebhooks","params":["{}"]}}"#,
            server.key
        )
    };
    // JSON-RPC 1.0 allows any id, so Vision6 clients get back even those 2.0 forbids.
    for id in ODD_IDS
        .iter()
        .copied()
        .chain(forbidden.iter().map(String::as_str))
    {
        let reply: Members = post_text(&server, &call(id)).await;
        assert_eq!(
            reply.keys().collect::<Vec<_>>(),
            ["error", "id", "result"],
            "{id}"
        );
        assert_eq!(reply["id"].get(), id);
        assert_eq!(reply["result"].get(), "0", "{id}");
    }
    // Protocol errors too: two ids, and a batch entry that is no request at all.
    let reply: Members = post_text(
        &server,
        &format!(
            r#"{{"id":1,"id":2,"method":"countWebhooks","params":["{}"]}}"#,
            server.key
        ),
    )
    .await;
    assert_eq!(reply.keys().collect::<Vec<_>>(), ["error", "id", "result"]);
    assert_eq!(code(&reply), -32600);
    let replies: Vec<Members> = post_text(&server, &format!("[1,{}]", call("-0"))).await;
    assert_eq!(replies.len(), 2);
    for reply in &replies {
        assert_eq!(reply.keys().collect::<Vec<_>>(), ["error", "id", "result"]);
    }
    assert_eq!(code(&replies[0]), -32600);
    assert_eq!(replies[1]["id"].get(), "-0");
}

#[tokio::test]
async fn jsonrpc_1_0_and_version_1_1_requests_are_the_vision6_dialect() {
    let server = Server::start(&[]);
    for marker in [json!({"jsonrpc": "1.0"}), json!({"version": "1.1"})] {
        let with = |mut request: Value| {
            for (k, v) in marker.as_object().unwrap() {
                request[k] = v.clone();
            }
            request
        };
        let reply = post(
            &server,
            V6,
            with(json!({"id": 1, "method": "countWebhooks", "params": [server.key]})),
        )
        .await;
        assert_eq!(
            reply,
            json!({"id": 1, "result": 0, "error": null}),
            "{marker}"
        );
        let reply = post(
            &server,
            V6,
            with(json!({"id": 2, "method": "countWebhoks", "params": [server.key]})),
        )
        .await;
        assert_eq!(keys(&reply), ["error", "id", "result"], "{marker}: {reply}");
        assert_eq!(reply["error"]["code"], 104, "{marker}: {reply}");
        let reply = post(
            &server,
            V6,
            with(json!({"id": 3, "method": "getWebhookById", "params": ["no key", 1]})),
        )
        .await;
        assert_eq!(keys(&reply), ["error", "id", "result"], "{marker}: {reply}");
        assert_eq!(reply["error"]["code"], 300, "{marker}: {reply}");
        // A body that does not parse (its closing brace cut off), in this dialect, is 100.
        let whole = with(json!({"id": 4, "method": "countWebhooks"})).to_string();
        let (status, text) = server
            .post_raw(V6, whole[..whole.len() - 1].to_owned())
            .await;
        assert_eq!(status, 200);
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(keys(&reply), ["error", "id", "result"], "{marker}: {reply}");
        assert_eq!(reply["error"]["code"], 100, "{marker}: {reply}");
    }
    // A batch past the limit is one error in this dialect too.
    let batch: Vec<Value> = (0..1001)
        .map(|i| json!({"jsonrpc": "1.0", "id": i, "method": "countWebhooks", "params": [server.key]}))
        .collect();
    let reply = post(&server, V6, Value::Array(batch)).await;
    let replies = reply.as_array().expect("an array");
    assert_eq!(replies.len(), 1, "{reply}");
    assert_eq!(keys(&replies[0]), ["error", "id", "result"], "{reply}");
    assert_eq!(replies[0]["error"]["code"], -32600, "{reply}");
}

#[tokio::test]
async fn vision6_protocol_errors_never_carry_jsonrpc() {
    let server = Server::start(&[]);
    let reply = post(&server, V6, json!({"id": 1, "method": 5})).await;
    assert_eq!(keys(&reply), ["error", "id", "result"], "{reply}");
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    let batch: Vec<Value> = (0..1001)
        .map(|i| json!({"id": i, "method": "countWebhooks", "params": [server.key]}))
        .collect();
    let reply = post(&server, V6, Value::Array(batch)).await;
    let replies = reply.as_array().expect("an array");
    assert_eq!(replies.len(), 1, "{reply}");
    assert_eq!(keys(&replies[0]), ["error", "id", "result"], "{reply}");
    assert_eq!(replies[0]["error"]["code"], -32600, "{reply}");
}

#[tokio::test]
async fn every_reply_is_application_json_utf8() {
    let server = Server::start(&[]);
    let key = &server.key;
    for body in [
        // 2.0: as jsonrpsee answers it, and as rewritten (an id it would not echo).
        json!({"jsonrpc": "2.0", "id": 1, "method": "countWebhooks", "params": [key]}).to_string(),
        json!({"jsonrpc": "2.0", "id": -1, "method": "countWebhooks", "params": [key]}).to_string(),
        json!({"jsonrpc": "2.0", "id": [1], "method": "countWebhooks"}).to_string(),
        json!([{"jsonrpc": "2.0", "id": 1, "method": "noSuchMethod"}]).to_string(),
        json!([]).to_string(),
        r#"{"jsonrpc":"2.0","id":1,"method":"#.to_owned(),
        // Vision6: replies, errors, batches, parse errors.
        json!({"id": 1, "method": "countWebhooks", "params": [key]}).to_string(),
        json!({"id": "a", "method": "getWebhookById", "params": [key, 9]}).to_string(),
        json!([{"id": 1, "method": "countWebhooks", "params": [key]}]).to_string(),
        "{not json".to_owned(),
        "5".to_owned(),
        // A lone notification: no body, but the header all the same.
        json!({"jsonrpc": "2.0", "method": "countWebhooks", "params": [key]}).to_string(),
    ] {
        let (status, content_type, text) = server
            .post_as(V6, Some("application/json"), body.clone())
            .await;
        assert_eq!(status, 200, "{body}: {text}");
        assert_eq!(content_type, "application/json; charset=utf-8", "{body}");
    }
}

#[tokio::test]
async fn invalid_2_0_requests_are_minus_32600() {
    let server = Server::start(&[]);
    let reply = post(&server, "/", json!({"jsonrpc": "2.0", "id": 1})).await;
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    let reply = post(&server, "/", json!([])).await;
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
}

// ---------------------------------------------------------------------------------------------
// Params: by name, arity, top-level types
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn params_by_name_work_for_every_webhook_method() {
    let server = Server::start(&[]);
    let id = server
        .ok(
            "addWebhook",
            json!({"api_key": server.key, "webhook_details": webhook("https://example.com/n")}),
        )
        .await;
    // Order of names does not matter.
    server
        .ok(
            "editWebhook",
            json!({"webhook_details": {"name": "by name"}, "webhook_id": id, "api_key": server.key}),
        )
        .await;
    let w = server
        .ok(
            "getWebhookById",
            json!({"api_key": server.key, "webhook_id": id}),
        )
        .await;
    assert_eq!(w["name"], "by name");
    server
        .ok(
            "addWebhook",
            json!({"api_key": server.key, "webhook_details": webhook("https://example.com/m")}),
        )
        .await;
    let found = server
        .ok(
            "searchWebhooks",
            json!({"api_key": server.key, "search_criteria": [["name", "exactly", "by name"]],
                   "limit": 5, "offset": 0, "sort_by": "id", "sort_order": "ASC"}),
        )
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], id);
    let found = server
        .ok(
            "searchWebhooks",
            json!({"api_key": server.key, "sort_by": "id"}),
        )
        .await;
    assert_eq!(found.as_array().unwrap().len(), 2);
    assert_eq!(found[1]["id"], id, "DESC by default with sort_by");
    assert_eq!(
        server
            .ok(
                "countWebhooks",
                json!({"api_key": server.key, "search_criteria": [["id", "exactly", id]]})
            )
            .await,
        1
    );
    let secret = server
        .ok(
            "rotateWebhookSecret",
            json!({"api_key": server.key, "webhook_id": id}),
        )
        .await;
    assert!(secret.as_str().unwrap().starts_with("whsec_"));
    let delivery = server
        .ok(
            "testWebhook",
            json!({"api_key": server.key, "webhook_id": id}),
        )
        .await;
    assert!(delivery.as_i64().is_some());
    server
        .ok(
            "deleteWebhook",
            json!({"api_key": server.key, "webhook_id": id}),
        )
        .await;
    assert_eq!(
        server
            .ok("countWebhooks", json!({"api_key": server.key}))
            .await,
        1
    );

    // Vision6 dialect by name too.
    let reply = post(
        &server,
        V6,
        json!({"id": 9, "method": "countWebhooks", "params": {"api_key": server.key}}),
    )
    .await;
    assert_eq!(reply, json!({"id": 9, "result": 1, "error": null}));
}

#[tokio::test]
async fn unknown_and_missing_names_are_310() {
    let server = Server::start(&[]);
    let (code, data) = server
        .err(
            "addWebhook",
            json!({"api_key": server.key, "webhook_details": webhook("https://example.com/u"), "foo": 1}),
        )
        .await;
    assert_eq!(code, 310);
    assert_eq!(
        data,
        json!([{"field": "foo", "message": "Unknown argument foo"}])
    );
    let (code, data) = server
        .err("getWebhookById", json!({"api_key": server.key, "id": 1}))
        .await;
    assert_eq!(code, 310);
    let fields: Vec<&Value> = data
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["field"])
        .collect();
    assert_eq!(fields, [&json!("id"), &json!("webhook_id")], "{data}");
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 0);
    // No key at all: 300.
    let (code, _) = server.err("countWebhooks", json!({})).await;
    assert_eq!(code, 300);
}

#[tokio::test]
async fn a_misnamed_key_is_310_naming_it_not_300() {
    // A camelCase SDK sends `apiKey`: it must learn that name is wrong, not that its key is.
    let server = Server::start(&[]);
    for (method, params) in [
        ("countWebhooks", json!({"apiKey": server.key})),
        ("countWebhooks", json!({"key": server.key})),
        (
            "getWebhookById",
            json!({"apiKey": server.key, "webhookId": 1}),
        ),
    ] {
        let (code, data) = server.err(method, params.clone()).await;
        assert_eq!(code, 310, "{method} {params}: {data}");
        let problems = data.as_array().unwrap();
        for name in params.as_object().unwrap().keys() {
            assert!(
                problems.contains(
                    &json!({"field": name, "message": format!("Unknown argument {name}")})
                ),
                "{method} {params}: {data}"
            );
        }
        assert!(
            problems.iter().any(|p| p["field"] == "api_key"),
            "names the key it expected: {data}"
        );
    }
    // The same in the Vision6 dialect.
    let reply = post(
        &server,
        V6,
        json!({"id": 1, "method": "countWebhooks", "params": {"apiKey": server.key}}),
    )
    .await;
    assert_eq!(reply["error"]["code"], 310, "{reply}");
    // An unknown name beside a wrong key is 310 too: the name is the first thing wrong.
    let (code, data) = server
        .err("countWebhooks", json!({"api_key": "nope", "limit": 1}))
        .await;
    assert_eq!(code, 310, "{data}");
}

#[tokio::test]
async fn extra_positional_params_are_310_never_minus_32602() {
    let server = Server::start(&[]);
    let (code, data) = server
        .err(
            "addWebhook",
            json!([server.key, webhook("https://example.com/extra"), "surplus"]),
        )
        .await;
    assert_eq!(code, 310);
    assert_eq!(data[0]["field"], "params", "{data}");
    assert!(
        data[0]["message"].as_str().unwrap().contains("at most 2"),
        "{data}"
    );
    assert_eq!(
        server.ok("countWebhooks", json!([server.key])).await,
        0,
        "nothing added"
    );
    for (method, params) in [
        ("getWebhookById", json!([server.key, 1, 2])),
        ("countWebhooks", json!([server.key, [], 1])),
        (
            "searchWebhooks",
            json!([server.key, [], 0, 0, "id", "ASC", "extra"]),
        ),
        ("deleteWebhook", json!([server.key, 1, true])),
    ] {
        let (code, data) = server.err(method, params).await;
        assert_eq!(code, 310, "{method}");
        assert!(
            data.as_array()
                .unwrap()
                .iter()
                .any(|p| p["field"] == "params"),
            "{method}: {data}"
        );
    }
    // In the Vision6 dialect too.
    let reply = post(
        &server,
        V6,
        json!({"id": 1, "method": "getWebhookById", "params": [server.key, 1, 2]}),
    )
    .await;
    assert_eq!(reply["error"]["code"], 310);
}

#[tokio::test]
async fn wrong_top_level_types_are_310_never_minus_32602() {
    let server = Server::start(&[]);
    for (method, params, field) in [
        (
            "addWebhook",
            json!([server.key, "details"]),
            "webhook_details",
        ),
        ("addWebhook", json!([server.key, [1, 2]]), "webhook_details"),
        ("addWebhook", json!([server.key, 5]), "webhook_details"),
        ("editWebhook", json!([server.key, "one", {}]), "webhook_id"),
        (
            "getWebhookById",
            json!([server.key, {"id": 1}]),
            "webhook_id",
        ),
        ("getWebhookById", json!([server.key, true]), "webhook_id"),
        ("searchWebhooks", json!([server.key, null, "ten"]), "limit"),
        ("searchWebhooks", json!([server.key, null, -1]), "limit"),
        (
            "searchWebhooks",
            json!([server.key, null, 0, "zero"]),
            "offset",
        ),
        (
            "searchWebhooks",
            json!([server.key, null, 0, "-1"]),
            "offset",
        ),
        ("searchWebhooks", json!([server.key, null, 0, -1]), "offset"),
        (
            "searchWebhooks",
            json!([server.key, null, 0, 0, 5]),
            "sort_by",
        ),
        (
            "searchWebhooks",
            json!([server.key, null, 0, 0, "id", "UP"]),
            "sort_order",
        ),
        (
            "searchWebhooks",
            json!([server.key, null, 0, 0, "id", 1]),
            "sort_order",
        ),
    ] {
        let (code, data) = server.err(method, params.clone()).await;
        assert_eq!(code, 310, "{method} {params}");
        assert!(
            data.as_array().unwrap().iter().any(|p| p["field"] == field),
            "{method} {params}: {data}"
        );
    }
    // params that are neither an array nor an object.
    for params in [json!("KEY"), json!(42), json!(true)] {
        let reply = server.rpc("countWebhooks", params.clone()).await;
        assert_eq!(reply["error"]["code"], 310, "{params}: {reply}");
        assert_eq!(reply["error"]["data"][0]["field"], "params", "{reply}");
    }
    let reply = post(
        &server,
        V6,
        json!({"id": 1, "method": "countWebhooks", "params": server.key}),
    )
    .await;
    assert_eq!(reply["result"], Value::Null);
    assert_eq!(reply["error"]["code"], 310, "{reply}");
}

#[tokio::test]
async fn rpc_discover_answers_in_both_dialects() {
    let server = Server::start(&[]);
    let doc = server.ok("rpc.discover", json!([])).await;
    assert!(doc["openrpc"].is_string(), "{doc}");
    let reply = post(
        &server,
        V6,
        json!({"id": 1, "method": "rpc.discover", "params": []}),
    )
    .await;
    assert_eq!(reply["error"], Value::Null);
    assert_eq!(reply["result"], doc);
}

#[tokio::test]
async fn bodies_that_are_no_request_still_get_http_200() {
    let server = Server::start(&[]);
    // Valid JSON that is no request, and text that is no JSON at all.
    for body in [
        "5",
        "\"addWebhook\"",
        "null",
        "true",
        "hello",
        "jsonrpc \"jsonrpc\"",
        "",
        "   ",
    ] {
        let (status, text) = server.post_raw(V6, body).await;
        assert_eq!(status, 200, "{body:?}: {text}");
        let reply: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{body:?}: bad JSON {e}: {text}"));
        assert_eq!(reply["id"], Value::Null, "{body:?}: {reply}");
        assert_eq!(reply["result"], Value::Null, "{body:?}: {reply}");
        assert_eq!(reply["error"]["code"], 100, "{body:?}: {reply}");
    }
    // Leading whitespace, however much, is no reason to refuse a request.
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": "countWebhooks", "params": [server.key]});
    for padding in [" ", "\n\t ", &" ".repeat(200)] {
        let (status, text) = server.post_raw("/", format!("{padding}{request}")).await;
        assert_eq!(status, 200, "{} spaces: {text}", padding.len());
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["result"], 0, "{reply}");
    }
    let v6 = json!({"id": 1, "method": "countWebhooks", "params": [server.key]});
    let (status, text) = server
        .post_raw(V6, format!("{}{v6}", " ".repeat(200)))
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"id": 1, "result": 0, "error": null})
    );
}
