//! The webhook methods over HTTP, as a client uses them: every method's happy path, the
//! Webhook shape with its defaults, the validation rules of `webhook_details`, and the errors
//! each method can answer with (310, 321, 350, 351, 355).
mod common;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::sync::Arc;

/// A webhook_details that differs from `webhook()` only in its url path.
fn hook(path: &str) -> Value {
    webhook(&format!("https://example.com/{path}"))
}

/// The fields named by a 310's `data`.
fn fields(data: &Value) -> Vec<String> {
    data.as_array()
        .unwrap_or_else(|| panic!("310 data is an array: {data}"))
        .iter()
        .map(|p| {
            assert!(p["message"].as_str().is_some_and(|m| !m.is_empty()), "{p}");
            p["field"].as_str().expect("field").to_owned()
        })
        .collect()
}

/// The message of the problem about `field`.
fn message_for(data: &Value, field: &str) -> String {
    data.as_array()
        .unwrap()
        .iter()
        .find(|p| p["field"] == field)
        .unwrap_or_else(|| panic!("no problem about {field}: {data}"))["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `whsec_` + standard base64 of 24 to 64 bytes.
fn assert_secret_format(secret: &str) {
    let b64 = secret
        .strip_prefix("whsec_")
        .unwrap_or_else(|| panic!("secret starts with whsec_: {secret}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("secret is base64 ({e}): {secret}"));
    assert!((24..=64).contains(&bytes.len()), "{} bytes", bytes.len());
}

async fn count(server: &Server) -> i64 {
    server
        .ok("countWebhooks", json!([server.key]))
        .await
        .as_i64()
        .expect("count is an integer")
}

// ---------------------------------------------------------------------------------------------
// Happy paths
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn add_then_get_shows_every_field_with_its_default() {
    let server = Server::start(&[]);
    let before = now();
    let id = server
        .ok(
            "addWebhook",
            json!([server.key, {"object": "contact", "event": "subscribed", "url": "https://example.com/in"}]),
        )
        .await;
    let id = id.as_i64().expect("addWebhook returns an int id");
    assert!(id > 0);
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    let mut keys: Vec<&str> = w.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "auth",
            "batch_size",
            "circuit_state",
            "consecutive_failures",
            "creation_time",
            "description",
            "event",
            "events",
            "headers",
            "id",
            "is_active",
            "last_error",
            "last_modified_time",
            "last_success_time",
            "list_id",
            "metadata",
            "name",
            "object",
            "secret",
            "url",
        ]
    );
    assert_eq!(w["id"], id);
    assert_eq!(w["name"], "contact.subscribed");
    assert_eq!(w["description"], "");
    assert_eq!(w["object"], "contact");
    assert_eq!(w["event"], "subscribed");
    assert_eq!(w["events"], json!(["subscribed"]));
    assert_eq!(w["list_id"], 0);
    assert_eq!(w["url"], "https://example.com/in");
    assert_eq!(w["headers"], json!([]));
    assert_eq!(w["auth"], Value::Null);
    assert_secret_format(w["secret"].as_str().unwrap());
    assert_eq!(w["is_active"], true);
    assert_eq!(w["batch_size"], 100);
    assert_eq!(w["metadata"], json!({}));
    assert_eq!(w["circuit_state"], "closed");
    assert_eq!(w["consecutive_failures"], 0);
    assert_eq!(w["last_error"], Value::Null);
    assert_eq!(w["last_success_time"], Value::Null);
    let created = w["creation_time"]
        .as_i64()
        .expect("creation_time is an int");
    assert!(created >= before - 1 && created <= now() + 1, "{created}");
    assert_eq!(w["last_modified_time"], created);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn add_with_every_field_returns_them_as_given_with_the_password_masked() {
    let server = Server::start(&[]);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let metadata = json!({"zeta": 1, "alpha": {"nested": [1, "two", null]}, "mid": true});
    let details = json!({
        "object": "list",
        "event": "bulk_updated",
        "list_id": 42,
        "url": "http://hooks.example.org:8443/path?q=1",
        "name": "My list hook",
        "description": "watches list 42",
        "headers": [{"name": "X-Token", "value": "abc"}, {"name": "X-Other", "value": "d e f"}],
        "auth": {"username": "user", "password": "s3cret"},
        "secret": secret,
        "is_active": false,
        "batch_size": 7,
        "metadata": metadata,
    });
    let id = server.ok("addWebhook", json!([server.key, details])).await;
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    for key in [
        "object",
        "event",
        "list_id",
        "url",
        "name",
        "description",
        "headers",
        "secret",
        "is_active",
        "batch_size",
    ] {
        assert_eq!(w[key], details[key], "{key}");
    }
    assert_eq!(
        w["auth"],
        json!({"username": "user", "password": "********"})
    );
    // Returned as given, key order included.
    assert_eq!(
        serde_json::to_string(&w["metadata"]).unwrap(),
        serde_json::to_string(&metadata).unwrap()
    );
}

#[tokio::test]
async fn edit_changes_only_the_keys_given() {
    let server = Server::start(&[]);
    let details = json!({
        "object": "contact", "event": "updated", "url": "https://example.com/a",
        "name": "before", "description": "desc", "headers": [{"name": "X-A", "value": "1"}],
        "auth": {"username": "u", "password": "p"}, "batch_size": 5, "metadata": {"k": "v"},
    });
    let id = server.ok("addWebhook", json!([server.key, details])).await;
    let before = server.ok("getWebhookById", json!([server.key, id])).await;

    let reply = server
        .ok(
            "editWebhook",
            json!([server.key, id, {"name": "after", "batch_size": 9}]),
        )
        .await;
    assert_eq!(reply, true);
    let after = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(after["name"], "after");
    assert_eq!(after["batch_size"], 9);
    for (key, value) in before.as_object().unwrap() {
        if !["name", "batch_size", "last_modified_time"].contains(&key.as_str()) {
            assert_eq!(&after[key], value, "{key} must not change");
        }
    }
    assert!(after["last_modified_time"].as_i64() >= before["last_modified_time"].as_i64());

    // Every other editable key, including clearing auth with null.
    let patch = json!({
        "object": "list", "event": "removed", "list_id": 3, "url": "https://example.com/b",
        "description": "", "headers": [], "auth": null, "is_active": false,
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "metadata": {},
    });
    server
        .ok("editWebhook", json!([server.key, id, patch]))
        .await;
    let after = server.ok("getWebhookById", json!([server.key, id])).await;
    for (key, value) in patch.as_object().unwrap() {
        assert_eq!(&after[key], value, "{key}");
    }
    assert_eq!(after["name"], "after", "name was not given: unchanged");

    // An empty patch changes nothing and still answers true.
    assert_eq!(
        server.ok("editWebhook", json!([server.key, id, {}])).await,
        true
    );
}

#[tokio::test]
async fn delete_removes_the_webhook_and_frees_its_identity() {
    let server = Server::start(&[]);
    let id = server
        .ok("addWebhook", json!([server.key, hook("d")]))
        .await;
    let other = server
        .ok("addWebhook", json!([server.key, hook("e")]))
        .await;
    assert_eq!(count(&server).await, 2);
    assert_eq!(
        server.ok("deleteWebhook", json!([server.key, id])).await,
        true
    );
    assert_eq!(count(&server).await, 1);
    let (code, _) = server.err("getWebhookById", json!([server.key, id])).await;
    assert_eq!(code, 350);
    let (code, _) = server.err("deleteWebhook", json!([server.key, id])).await;
    assert_eq!(code, 350, "deleting twice");
    let (code, _) = server
        .err("editWebhook", json!([server.key, id, {"name": "x"}]))
        .await;
    assert_eq!(code, 350, "editing a deleted webhook");
    let found = server.ok("searchWebhooks", json!([server.key])).await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], other);
    // The same details may be added again: a deleted webhook is no duplicate.
    let again = server
        .ok("addWebhook", json!([server.key, hook("d")]))
        .await;
    assert_ne!(again, id);
}

#[tokio::test]
async fn search_and_count_list_the_accounts_webhooks() {
    let server = Server::start(&[]);
    let a = server
        .ok("addWebhook", json!([server.key, hook("a")]))
        .await;
    let b = server
        .ok("addWebhook", json!([server.key, hook("b")]))
        .await;
    let found = server.ok("searchWebhooks", json!([server.key])).await;
    let ids: Vec<&Value> = found.as_array().unwrap().iter().map(|w| &w["id"]).collect();
    assert_eq!(ids, [&a, &b]);
    assert_eq!(found[0]["url"], "https://example.com/a");
    assert_secret_format(found[0]["secret"].as_str().unwrap());
    assert_eq!(count(&server).await, 2);
    // Search shows a webhook exactly as get does.
    let got = server.ok("getWebhookById", json!([server.key, b])).await;
    assert_eq!(found[1], got);
}

#[tokio::test]
async fn rotate_returns_a_new_secret_that_get_then_shows() {
    let server = Server::start(&[]);
    let id = server
        .ok("addWebhook", json!([server.key, hook("r")]))
        .await;
    let old = server.ok("getWebhookById", json!([server.key, id])).await["secret"].clone();
    let new = server
        .ok("rotateWebhookSecret", json!([server.key, id]))
        .await;
    let new = new.as_str().expect("the new secret is a string");
    assert_secret_format(new);
    assert_ne!(json!(new), old);
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(w["secret"], new);
    let again = server
        .ok("rotateWebhookSecret", json!([server.key, id]))
        .await;
    assert_ne!(again, json!(new), "every rotation makes a new secret");
}

#[tokio::test]
async fn test_webhook_returns_the_id_of_a_ping_delivery() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    let id = server
        .ok(
            "addWebhook",
            json!([server.key, webhook(&receiver.url("/t"))]),
        )
        .await;
    let delivery = server.ok("testWebhook", json!([server.key, id])).await;
    let delivery_id = delivery.as_i64().expect("testWebhook returns an int id");
    assert!(delivery_id > 0);
    let d = server
        .ok("getDeliveryById", json!([server.key, delivery_id]))
        .await;
    assert_eq!(d["id"], delivery_id);
    assert_eq!(d["webhook_id"], id);
    let (code, _) = server
        .err("testWebhook", json!([server.key, 999_999]))
        .await;
    assert_eq!(code, 350);
}

#[tokio::test]
async fn restart_keeps_the_data() {
    let mut server = Server::start(&[]);
    let details = json!({
        "object": "contact", "event": "created", "url": "https://example.com/keep",
        "name": "kept", "metadata": {"a": [1, 2]}, "auth": {"username": "u", "password": "p"},
    });
    let id = server.ok("addWebhook", json!([server.key, details])).await;
    let before = server.ok("getWebhookById", json!([server.key, id])).await;
    server.restart();
    let after = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(after, before);
    assert_eq!(count(&server).await, 1);
    // And the identity survives too.
    let (code, _) = server.err("addWebhook", json!([server.key, details])).await;
    assert_eq!(code, 351);
}

// ---------------------------------------------------------------------------------------------
// Errors: 321 (access), 350 (not found / other account), 351 (duplicate), 355 (limit)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_standard_key_reads_but_cannot_change_webhooks_and_never_sees_secrets() {
    let server = Server::start(&[]);
    let standard = server.add_key("default", "standard");
    let id = server
        .ok("addWebhook", json!([server.key, hook("s")]))
        .await;

    for (method, params) in [
        ("addWebhook", json!([standard, hook("s2")])),
        ("editWebhook", json!([standard, id, {"name": "x"}])),
        ("deleteWebhook", json!([standard, id])),
        ("rotateWebhookSecret", json!([standard, id])),
        ("retryDelivery", json!([standard, 1])),
    ] {
        let reply = server.rpc(method, params).await;
        assert_eq!(reply["error"]["code"], 321, "{method}: {reply}");
        assert_eq!(reply["error"]["message"], "Access Denied");
        assert_eq!(
            reply["error"]["data"]["required_access"], "full",
            "{method}: data names the level needed"
        );
    }
    // Nothing changed.
    assert_eq!(count(&server).await, 1);
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(w["name"], "contact.subscribed");

    let w = server.ok("getWebhookById", json!([standard, id])).await;
    assert_eq!(w["id"], id);
    assert_eq!(w["url"], "https://example.com/s");
    assert!(w.get("secret").is_none(), "no secret for standard: {w}");
    let found = server.ok("searchWebhooks", json!([standard])).await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert!(found[0].get("secret").is_none(), "{found}");
    assert_eq!(server.ok("countWebhooks", json!([standard])).await, 1);
    let delivery = server.ok("testWebhook", json!([standard, id])).await;
    assert!(delivery.as_i64().is_some_and(|d| d > 0));
}

#[tokio::test]
async fn unknown_webhook_ids_are_350() {
    let server = Server::start(&[]);
    for (method, params) in [
        ("getWebhookById", json!([server.key, 12345])),
        ("editWebhook", json!([server.key, 12345, {"name": "x"}])),
        ("deleteWebhook", json!([server.key, 12345])),
        ("rotateWebhookSecret", json!([server.key, 12345])),
        ("testWebhook", json!([server.key, 12345])),
    ] {
        let reply = server.rpc(method, params).await;
        assert_eq!(reply["error"]["code"], 350, "{method}: {reply}");
        assert_eq!(reply["error"]["message"], "Unable to Load Webhook");
    }
}

#[tokio::test]
async fn another_accounts_webhook_is_350_and_invisible() {
    let server = Server::start(&[]);
    let other = server.add_key("other", "full");
    let other_standard = server.add_key("other", "standard");
    let id = server
        .ok("addWebhook", json!([server.key, hook("mine")]))
        .await;

    for key in [&other, &other_standard] {
        let (code, _) = server.err("getWebhookById", json!([key, id])).await;
        assert_eq!(code, 350);
        let (code, _) = server.err("testWebhook", json!([key, id])).await;
        assert_eq!(code, 350);
        assert_eq!(server.ok("searchWebhooks", json!([key])).await, json!([]));
        assert_eq!(server.ok("countWebhooks", json!([key])).await, 0);
        let found = server
            .ok(
                "searchWebhooks",
                json!([key, [["id", "exactly", id.clone()]]]),
            )
            .await;
        assert_eq!(found, json!([]));
    }
    for (method, params) in [
        ("editWebhook", json!([other, id, {"name": "stolen"}])),
        ("deleteWebhook", json!([other, id])),
        ("rotateWebhookSecret", json!([other, id])),
    ] {
        let (code, _) = server.err(method, params).await;
        assert_eq!(code, 350, "{method}");
    }
    // Untouched, still there for its owner.
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(w["name"], "contact.subscribed");
    // The same details in another account are no duplicate.
    let theirs = server.ok("addWebhook", json!([other, hook("mine")])).await;
    assert_ne!(theirs, id);
    assert_eq!(count(&server).await, 1);
}

#[tokio::test]
async fn duplicates_are_351_on_add_and_on_edit() {
    let server = Server::start(&[]);
    let details = json!({"object": "list", "event": "created", "list_id": 5, "url": "https://example.com/dup"});
    let first = server.ok("addWebhook", json!([server.key, details])).await;
    let reply = server.rpc("addWebhook", json!([server.key, details])).await;
    assert_eq!(reply["error"]["code"], 351, "{reply}");
    assert_eq!(
        reply["error"]["message"],
        "Duplicate Webhook details not allowed"
    );
    // Other names and settings do not make it different: what counts is object, list_id, url
    // and a shared event.
    let mut renamed = details.clone();
    renamed["name"] = json!("another name");
    renamed["batch_size"] = json!(1);
    let (code, _) = server.err("addWebhook", json!([server.key, renamed])).await;
    assert_eq!(code, 351);
    // Nor does another spelling of the same URL: it would receive every event twice.
    for spelling in [
        "HTTPS://EXAMPLE.com/dup",
        "https://example.com:443/dup",
        "https://example.com/x/../dup",
        // A fragment is never sent: the same receiver.
        "https://example.com/dup#a",
    ] {
        let mut respelled = details.clone();
        respelled["url"] = json!(spelling);
        let (code, _) = server
            .err("addWebhook", json!([server.key, respelled]))
            .await;
        assert_eq!(code, 351, "{spelling}");
    }
    assert_eq!(count(&server).await, 1);
    // Kept with its fragment, a url is still compared without it.
    let with_fragment =
        json!({"object": "list", "event": "created", "url": "https://example.com/f#one"});
    let kept = server
        .ok("addWebhook", json!([server.key, with_fragment]))
        .await;
    for url in ["https://example.com/f", "https://example.com/f#two"] {
        let d = json!({"object": "list", "event": "created", "url": url});
        let (code, _) = server.err("addWebhook", json!([server.key, d])).await;
        assert_eq!(code, 351, "{url}");
    }
    // An escaped `#` is part of the path, sent as such: another receiver.
    let escaped =
        json!({"object": "list", "event": "created", "url": "https://example.com/f%23two"});
    let escaped = server.ok("addWebhook", json!([server.key, escaped])).await;
    server
        .ok("deleteWebhook", json!([server.key, escaped]))
        .await;
    // Two webhooks stored before fragments were compared (made so behind the server's back)
    // still take an edit that leaves what 351 compares alone.
    let twin = json!({"object": "list", "event": "created", "url": "https://example.com/f2"});
    let twin = server.ok("addWebhook", json!([server.key, twin])).await;
    server.sql_execute(&format!(
        "UPDATE webhooks SET url = 'https://example.com/f#two' WHERE id = {twin}"
    ));
    let rename = json!([server.key, twin, {"name": "renamed", "is_active": false}]);
    assert_eq!(server.ok("editWebhook", rename).await, true);
    server.ok("deleteWebhook", json!([server.key, twin])).await;
    server.ok("deleteWebhook", json!([server.key, kept])).await;

    // Each part of the identity makes a webhook distinct.
    for change in [
        json!({"event": "updated"}),
        json!({"list_id": 6}),
        json!({"url": "https://example.com/dup2"}),
        json!({"object": "contact"}),
    ] {
        let mut d = details.clone();
        for (k, v) in change.as_object().unwrap() {
            d[k] = v.clone();
        }
        server.ok("addWebhook", json!([server.key, d])).await;
    }
    assert_eq!(count(&server).await, 5);

    // An edit that would make a duplicate is refused and changes nothing.
    let second = server
        .ok(
            "addWebhook",
            json!([server.key, {"object": "list", "event": "created", "list_id": 5, "url": "https://example.com/other"}]),
        )
        .await;
    let before = server
        .ok("getWebhookById", json!([server.key, second]))
        .await;
    let (code, _) = server
        .err(
            "editWebhook",
            json!([server.key, second, {"url": "https://example.com/dup", "name": "renamed"}]),
        )
        .await;
    assert_eq!(code, 351);
    assert_eq!(
        server
            .ok("getWebhookById", json!([server.key, second]))
            .await,
        before
    );
    // Editing a webhook to its own identity is no duplicate.
    server
        .ok(
            "editWebhook",
            json!([server.key, first, {"url": "https://example.com/dup", "name": "same"}]),
        )
        .await;
}

#[tokio::test]
async fn the_webhook_limit_is_355() {
    let server = Server::start(&["--max-webhooks", "2"]);
    let other = server.add_key("other", "full");
    let a = server
        .ok("addWebhook", json!([server.key, hook("1")]))
        .await;
    server
        .ok("addWebhook", json!([server.key, hook("2")]))
        .await;
    let reply = server
        .rpc("addWebhook", json!([server.key, hook("3")]))
        .await;
    assert_eq!(reply["error"]["code"], 355, "{reply}");
    assert_eq!(reply["error"]["message"], "Webhook limit reached");
    assert_eq!(reply["error"]["data"]["limit"], 2);
    assert_eq!(count(&server).await, 2);
    // The limit is per account.
    server.ok("addWebhook", json!([other, hook("1")])).await;
    // Deleting makes room again.
    server.ok("deleteWebhook", json!([server.key, a])).await;
    server
        .ok("addWebhook", json!([server.key, hook("3")]))
        .await;
    assert_eq!(count(&server).await, 2);
}

// ---------------------------------------------------------------------------------------------
// 310: the rules of webhook_details, each with an accepted edge and a refused value
// ---------------------------------------------------------------------------------------------

/// addWebhook with `webhook()` plus `extra`; `Ok(id)` or `Err(data)` of a 310.
async fn try_add(server: &Server, extra: Value) -> Result<Value, Value> {
    let mut details = hook(&format!("v{}", rand_suffix()));
    for (k, v) in extra.as_object().unwrap() {
        details[k] = v.clone();
    }
    let reply = server.rpc("addWebhook", json!([server.key, details])).await;
    match reply.get("error") {
        None => Ok(reply["result"].clone()),
        Some(e) => {
            assert_eq!(e["code"], 310, "{reply}");
            assert_eq!(e["message"], "Invalid Method Parameters");
            Err(e["data"].clone())
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// `extra` is accepted, and get shows the value it set under `key`.
async fn accepted(server: &Server, extra: Value, key: &str) {
    let id = try_add(server, extra.clone())
        .await
        .unwrap_or_else(|data| panic!("{extra} refused: {data}"));
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(w[key], extra[key], "{key}");
}

/// `extra` is refused with a problem naming `field`.
async fn refused(server: &Server, extra: Value, field: &str) {
    let before = count(server).await;
    let data = try_add(server, extra.clone())
        .await
        .expect_err(&format!("{extra} must be refused"));
    assert!(
        fields(&data).iter().any(|f| f == field),
        "{extra}: problems {data} do not name {field}"
    );
    assert_eq!(count(server).await, before, "{extra}: nothing added");
}

fn text(n: usize) -> String {
    "x".repeat(n)
}

#[tokio::test]
async fn object_and_event() {
    let server = Server::start(&[]);
    for (object, events) in [
        (
            "list",
            &["created", "updated", "removed", "bulk_updated"][..],
        ),
        (
            "contact",
            &[
                "created",
                "updated",
                "removed",
                "subscribed",
                "unsubscribed",
                "deactivated",
                "reactivated",
            ][..],
        ),
    ] {
        for event in events {
            accepted(&server, json!({"object": object, "event": event}), "event").await;
        }
    }
    refused(&server, json!({"object": "campaign"}), "object").await;
    refused(&server, json!({"object": ""}), "object").await;
    refused(&server, json!({"object": 1}), "object").await;
    refused(&server, json!({"event": "exploded"}), "event").await;
    refused(&server, json!({"event": 7}), "event").await;
    for event in ["subscribed", "unsubscribed", "deactivated", "reactivated"] {
        refused(&server, json!({"object": "list", "event": event}), "event").await;
    }
    refused(
        &server,
        json!({"object": "contact", "event": "bulk_updated"}),
        "event",
    )
    .await;
    let data = try_add(&server, json!({"object": "list", "event": "subscribed"}))
        .await
        .unwrap_err();
    let message = message_for(&data, "event");
    assert!(
        message.contains("bulk_updated"),
        "lists the valid events: {message}"
    );
}

#[tokio::test]
async fn required_keys() {
    let server = Server::start(&[]);
    for missing in ["object", "event", "url"] {
        let mut details = hook("req");
        details.as_object_mut().unwrap().remove(missing);
        let (code, data) = server.err("addWebhook", json!([server.key, details])).await;
        assert_eq!(code, 310);
        assert_eq!(fields(&data), [missing], "{data}");
    }
    let (code, data) = server.err("addWebhook", json!([server.key, {}])).await;
    assert_eq!(code, 310);
    let mut got = fields(&data);
    got.sort();
    assert_eq!(got, ["event", "object", "url"], "all three at once: {data}");
    let (code, data) = server.err("addWebhook", json!([server.key])).await;
    assert_eq!(code, 310);
    assert_eq!(fields(&data), ["webhook_details"]);
    let (code, data) = server.err("addWebhook", json!([server.key, null])).await;
    assert_eq!(code, 310);
    assert_eq!(fields(&data), ["webhook_details"]);
    assert_eq!(count(&server).await, 0);
}

#[tokio::test]
async fn list_id() {
    let server = Server::start(&[]);
    accepted(&server, json!({"list_id": 0}), "list_id").await;
    accepted(&server, json!({"list_id": 1}), "list_id").await;
    accepted(&server, json!({"list_id": i64::MAX}), "list_id").await;
    refused(&server, json!({"list_id": -1}), "list_id").await;
    // PHP sends integers it read from a database as strings of digits; nothing else passes.
    for digits in ["5", "0", "007"] {
        let id = try_add(&server, json!({ "list_id": digits }))
            .await
            .unwrap();
        let w = server.ok("getWebhookById", json!([server.key, id])).await;
        assert_eq!(w["list_id"], digits.parse::<i64>().unwrap(), "{digits}");
    }
    for text in [
        "-1",
        "+5",
        " 5",
        "5 ",
        "1.5",
        "1e3",
        "0x10",
        "",
        "five",
        "99999999999999999999",
    ] {
        refused(&server, json!({ "list_id": text }), "list_id").await;
    }
    refused(&server, json!({"list_id": 1.5}), "list_id").await;
    refused(&server, json!({"list_id": null}), "list_id").await;
}

#[tokio::test]
async fn url() {
    let server = Server::start(&[]);
    accepted(&server, json!({"url": "http://example.com/"}), "url").await;
    // One URL has one spelling, the URL standard's, which is also what is sent.
    for (given, kept) in [
        ("http://example.org", "http://example.org/"),
        (
            "HTTPS://Example.ORG:443/A/../b?Q=1",
            "https://example.org/b?Q=1",
        ),
        ("http://example.org:8080/./c", "http://example.org:8080/c"),
    ] {
        let id = try_add(&server, json!({ "url": given })).await.unwrap();
        let w = server.ok("getWebhookById", json!([server.key, id])).await;
        assert_eq!(w["url"], kept, "{given}");
    }
    // That spelling percent-encodes what is not ASCII (é is %C3%A9), and the limit holds for
    // it: 20 + 6 × 338 = 2048 characters, then one é more.
    let prefix = "https://example.com/";
    let id = try_add(
        &server,
        json!({ "url": format!("{prefix}{}", "é".repeat(338)) }),
    )
    .await
    .unwrap();
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(w["url"], format!("{prefix}{}", "%C3%A9".repeat(338)));
    refused(
        &server,
        json!({ "url": format!("{prefix}{}", "é".repeat(339)) }),
        "url",
    )
    .await;
    accepted(
        &server,
        json!({"url": "https://example.com:8443/a/b?c=d#e"}),
        "url",
    )
    .await;
    // Exactly 2048 characters.
    let prefix = "https://example.com/";
    let long = format!("{prefix}{}", text(2048 - prefix.len()));
    assert_eq!(long.len(), 2048);
    accepted(&server, json!({ "url": long }), "url").await;
    refused(&server, json!({ "url": format!("{long}y") }), "url").await;
    for bad in [
        "",
        "example.com/hook",
        "/relative/path",
        "ftp://example.com/x",
        "mailto:someone@example.com",
        "javascript:alert(1)",
        "http://",
        "https://user:pass@example.com/x",
        "https://user@example.com/x",
        "not a url",
        // What a lenient URL parser would quietly repair, delivering elsewhere than stored.
        " https://example.com/lead",
        "https://example.com/trail ",
        "https://exa\nmple.com/newline",
        "https://example.com/tab\there",
        "https://example.com/a space",
        "https://example.com/nul\u{0}",
        "http:example.com/no-slashes",
        "http:/example.com/one-slash",
        "https:\\\\example.com\\back",
        // No host in the text: the URL parser would read `http:///x` as `http://x/`.
        "http:///example.com/three-slashes",
        "https:////example.com",
        "http:///",
        "http://?q=example.com",
        "http://#example.com",
        // User info, even empty, is user info.
        "http://@example.com/",
        "https://:@example.com/",
    ] {
        refused(&server, json!({ "url": bad }), "url").await;
    }
    refused(&server, json!({"url": 5}), "url").await;
    let data = try_add(&server, json!({"url": "https://u:p@example.com/"}))
        .await
        .unwrap_err();
    assert!(message_for(&data, "url").contains("user info"), "{data}");
}

#[tokio::test]
async fn name_and_description() {
    let server = Server::start(&[]);
    accepted(&server, json!({"name": "n"}), "name").await;
    accepted(&server, json!({ "name": text(250) }), "name").await;
    // Characters, not bytes.
    accepted(&server, json!({ "name": "é".repeat(250) }), "name").await;
    refused(&server, json!({"name": ""}), "name").await;
    // Blank is no name: it would show as nothing in every list.
    for blank in [" ", "   ", "\t\n", "\u{3000}", "\u{200B}", " \u{FEFF} "] {
        refused(&server, json!({ "name": blank }), "name").await;
    }
    // Control characters have no place in a name shown in lists and logs.
    for control in ["\u{0}", "a\u{7}b", "line\nbreak", "\u{9B}x"] {
        refused(&server, json!({ "name": control }), "name").await;
    }
    let data = try_add(&server, json!({"name": "  "})).await.unwrap_err();
    assert_eq!(message_for(&data, "name"), "must not be blank", "{data}");
    accepted(&server, json!({"name": " padded "}), "name").await;
    refused(&server, json!({ "name": text(251) }), "name").await;
    refused(&server, json!({"name": 3}), "name").await;

    accepted(&server, json!({"description": ""}), "description").await;
    accepted(&server, json!({ "description": text(1024) }), "description").await;
    refused(&server, json!({ "description": text(1025) }), "description").await;
    refused(&server, json!({"description": ["a"]}), "description").await;
}

#[tokio::test]
async fn headers() {
    let server = Server::start(&[]);
    let h = |name: &str, value: &str| json!({"headers": [{"name": name, "value": value}]});
    accepted(&server, json!({"headers": []}), "headers").await;
    accepted(&server, h("X-Api-Key", "v"), "headers").await;
    accepted(&server, h(&text(128), &text(1024)), "headers").await;
    accepted(
        &server,
        h("x!#$%&'*+-.^_`|~9", "any value: with spaces"),
        "headers",
    )
    .await;
    let many: Vec<Value> = (0..99)
        .map(|i| json!({"name": format!("X-H{i}"), "value": "v"}))
        .collect();
    accepted(&server, json!({ "headers": many }), "headers").await;
    let too_many: Vec<Value> = (0..100)
        .map(|i| json!({"name": format!("X-H{i}"), "value": "v"}))
        .collect();
    refused(&server, json!({ "headers": too_many }), "headers").await;

    refused(&server, json!({"headers": {"X-A": "b"}}), "headers").await;
    refused(&server, json!({"headers": ["X-A: b"]}), "headers[0]").await;
    refused(&server, h("", "v"), "headers[0].name").await;
    for blank in [" ", "\t"] {
        let data = try_add(&server, h(blank, "v")).await.unwrap_err();
        assert_eq!(
            message_for(&data, "headers[0].name"),
            "must not be blank",
            "{data}"
        );
    }
    refused(&server, h(&text(129), "v"), "headers[0].name").await;
    refused(&server, h("X A", "v"), "headers[0].name").await;
    refused(&server, h("X:A", "v"), "headers[0].name").await;
    refused(&server, h("X-Ä", "v"), "headers[0].name").await;
    refused(&server, h("X-A", ""), "headers[0].value").await;
    refused(&server, h("X-A", &text(1025)), "headers[0].value").await;
    refused(&server, h("X-A", "a\r\nInjected: yes"), "headers[0].value").await;
    refused(&server, h("X-A", "a\nb"), "headers[0].value").await;
    refused(&server, h("X-A", "a\rb"), "headers[0].value").await;
    // Other control characters could never be sent: refused now, not dropped later.
    refused(&server, h("X-A", "a\u{0}b"), "headers[0].value").await;
    refused(&server, h("X-A", "a\u{7f}b"), "headers[0].value").await;
    refused(&server, h("X-A", "a\u{1b}b"), "headers[0].value").await;
    accepted(&server, h("X-A", "tab\tinside"), "headers").await;
    accepted(&server, h("X-A", "naïve café"), "headers").await;
    for reserved in [
        "Host",
        "content-length",
        "Content-Type",
        "transfer-encoding",
        "Connection",
        "USER-AGENT",
        "webhook-id",
        "Webhook-Signature",
        "webhook-timestamp",
        "webhook-anything",
    ] {
        refused(&server, h(reserved, "v"), "headers[0].name").await;
    }
    refused(
        &server,
        json!({"headers": [{"name": "X-A"}]}),
        "headers[0].value",
    )
    .await;
    refused(
        &server,
        json!({"headers": [{"value": "v"}]}),
        "headers[0].name",
    )
    .await;
    // Everything wrong with one item is said at once: its name's problem did not hide its value's.
    for (name, value, name_says, value_says) in [
        (
            "Host",
            "",
            "Host is reserved and set by hookrpc",
            "must be 1 to 1024 characters",
        ),
        (
            "x y",
            "a\nb",
            "must contain only HTTP token characters",
            "must not contain CR, LF or other control characters",
        ),
    ] {
        let with_extra = json!({"headers": [{"name": name, "value": value, "extra": 1}]});
        let data = try_add(&server, with_extra).await.unwrap_err();
        assert_eq!(message_for(&data, "headers[0].name"), name_says, "{data}");
        assert_eq!(message_for(&data, "headers[0].value"), value_says, "{data}");
        assert_eq!(
            message_for(&data, "headers[0].extra"),
            "Unknown argument extra"
        );
    }
    refused(
        &server,
        json!({"headers": [{"name": "X-A", "value": "v", "extra": 1}]}),
        "headers[0].extra",
    )
    .await;
    // The index names the bad item.
    refused(
        &server,
        json!({"headers": [{"name": "X-A", "value": "v"}, {"name": "Host", "value": "v"}]}),
        "headers[1].name",
    )
    .await;
}

#[tokio::test]
async fn auth() {
    let server = Server::start(&[]);
    accepted(&server, json!({ "auth": null }), "auth").await;
    let id = try_add(
        &server,
        json!({"auth": {"username": text(1024), "password": "p"}}),
    )
    .await
    .unwrap();
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(
        w["auth"],
        json!({"username": text(1024), "password": "********"})
    );
    try_add(
        &server,
        json!({"auth": {"username": "u", "password": text(1024)}}),
    )
    .await
    .unwrap();
    try_add(&server, json!({"auth": {"username": "u", "password": "p"}}))
        .await
        .unwrap();
    refused(
        &server,
        json!({"auth": {"username": "", "password": "p"}}),
        "auth.username",
    )
    .await;
    refused(
        &server,
        json!({"auth": {"username": "u", "password": ""}}),
        "auth.password",
    )
    .await;
    refused(
        &server,
        json!({"auth": {"username": text(1025), "password": "p"}}),
        "auth.username",
    )
    .await;
    refused(
        &server,
        json!({"auth": {"username": "u", "password": text(1025)}}),
        "auth.password",
    )
    .await;
    refused(&server, json!({"auth": {"username": "u"}}), "auth.password").await;
    refused(&server, json!({"auth": {"password": "p"}}), "auth.username").await;
    refused(
        &server,
        json!({"auth": {"username": "u", "password": "p", "realm": "r"}}),
        "auth.realm",
    )
    .await;
    refused(&server, json!({"auth": "user:pass"}), "auth").await;
    // RFC 7617: neither may hold a control character (C0, DEL, C1).
    for bad in [
        "a\u{0}b",
        "line\n",
        "tab\there",
        "a\u{7f}",
        "a\u{85}b",
        "\u{9f}",
    ] {
        for (field, auth) in [
            ("auth.username", json!({"username": bad, "password": "p"})),
            ("auth.password", json!({"username": "u", "password": bad})),
        ] {
            refused(&server, json!({ "auth": auth }), field).await;
        }
    }
    let data = try_add(
        &server,
        json!({"auth": {"username": "u\n", "password": "p\r"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(fields(&data), ["auth.username", "auth.password"], "{data}");
    // Non-ASCII and spaces are no control characters.
    let id = try_add(
        &server,
        json!({"auth": {"username": "naïve", "password": "p w é"}}),
    )
    .await
    .unwrap();
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(
        w["auth"],
        json!({"username": "naïve", "password": "********"})
    );
    // HTTP Basic splits at the first colon: such a user would reach the receiver mangled.
    refused(
        &server,
        json!({"auth": {"username": "ad:min", "password": "p"}}),
        "auth.username",
    )
    .await;
    try_add(
        &server,
        json!({"auth": {"username": "admin", "password": "p:w"}}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn secret() {
    let server = Server::start(&[]);
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    accepted(
        &server,
        json!({ "secret": format!("whsec_{}", b64(24)) }),
        "secret",
    )
    .await;
    accepted(
        &server,
        json!({ "secret": format!("whsec_{}", b64(64)) }),
        "secret",
    )
    .await;
    accepted(
        &server,
        json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        "secret",
    )
    .await;
    refused(
        &server,
        json!({ "secret": format!("whsec_{}", b64(23)) }),
        "secret",
    )
    .await;
    refused(
        &server,
        json!({ "secret": format!("whsec_{}", b64(65)) }),
        "secret",
    )
    .await;
    refused(&server, json!({ "secret": b64(32) }), "secret").await;
    refused(
        &server,
        json!({ "secret": format!("whsk_{}", b64(32)) }),
        "secret",
    )
    .await;
    refused(
        &server,
        json!({"secret": "whsec_not base64 at all!!!!!!!!!!!!"}),
        "secret",
    )
    .await;
    refused(&server, json!({"secret": ""}), "secret").await;
    refused(&server, json!({"secret": 12}), "secret").await;
}

#[tokio::test]
async fn is_active_and_batch_size() {
    let server = Server::start(&[]);
    accepted(&server, json!({"is_active": true}), "is_active").await;
    accepted(&server, json!({"is_active": false}), "is_active").await;
    refused(&server, json!({"is_active": "true"}), "is_active").await;
    refused(&server, json!({"is_active": 2}), "is_active").await;
    refused(&server, json!({"is_active": "yes"}), "is_active").await;
    refused(&server, json!({"is_active": 1.0}), "is_active").await;

    accepted(&server, json!({"batch_size": 1}), "batch_size").await;
    accepted(&server, json!({"batch_size": 1000}), "batch_size").await;
    refused(&server, json!({"batch_size": 0}), "batch_size").await;
    refused(&server, json!({"batch_size": 1001}), "batch_size").await;
    refused(&server, json!({"batch_size": -5}), "batch_size").await;
    refused(&server, json!({"batch_size": "10.0"}), "batch_size").await;
    refused(&server, json!({"batch_size": "1001"}), "batch_size").await;
}

#[tokio::test]
async fn metadata() {
    let server = Server::start(&[]);
    accepted(&server, json!({"metadata": {}}), "metadata").await;
    // {"k":"xxx…"} is 8 bytes of framing around the value: exactly 4 KiB, then one more.
    let exactly = json!({ "k": text(4096 - 8) });
    assert_eq!(serde_json::to_vec(&exactly).unwrap().len(), 4096);
    accepted(&server, json!({ "metadata": exactly }), "metadata").await;
    refused(
        &server,
        json!({ "metadata": {"k": text(4096 - 7)} }),
        "metadata",
    )
    .await;
    refused(&server, json!({"metadata": [1, 2]}), "metadata").await;
    refused(&server, json!({"metadata": "{}"}), "metadata").await;
    // The limit counts the object as UTF-8, whatever escapes the client wrote: PHP writes é as
    // \u00e9, six bytes for two. 2044 of them make 4096 bytes; one more is too many.
    for (n, code) in [(2044, None), (2045, Some(310))] {
        let escaped = "\\u00e9".repeat(n);
        let call = format!(
            r#"{{"jsonrpc": "2.0", "id": 1, "method": "addWebhook", "params": ["{}",
                {{"object": "contact", "event": "created", "url": "https://example.com/e{n}",
                  "metadata": {{"k": "{escaped}"}}}}]}}"#,
            server.key
        );
        let (_, reply) = server.post_raw("/", call).await;
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["error"]["code"].as_i64(), code, "{n}: {reply}");
    }
}

/// What PHP's `json_encode` writes for a PHP value: `[]` for an empty array (PHP cannot tell
/// it from an empty map), strings of digits for integers read from a database, 0/1 for
/// booleans stored as TINYINT.
#[tokio::test]
async fn php_shaped_input_is_accepted() {
    let server = Server::start(&[]);
    let id = server
        .ok(
            "addWebhook",
            json!([server.key, {"object": "contact", "event": "subscribed",
                                "url": "https://example.com/php", "list_id": "12",
                                "batch_size": "10", "is_active": 0, "metadata": [], "auth": []}]),
        )
        .await;
    let w = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(w["list_id"], 12);
    assert_eq!(w["batch_size"], 10);
    assert_eq!(w["is_active"], false);
    assert_eq!(w["metadata"], json!({}));
    assert_eq!(w["auth"], Value::Null);
    // An id as a string of digits, in every method that takes one; `[]` as details.
    let as_text = json!(id.to_string());
    for (value, expected) in [(json!(1), true), (json!("0"), false), (json!("1"), true)] {
        let done = server
            .ok(
                "editWebhook",
                json!([server.key, as_text, {"is_active": value}]),
            )
            .await;
        assert_eq!(done, true);
        let w = server
            .ok("getWebhookById", json!([server.key, as_text]))
            .await;
        assert_eq!(w["is_active"], expected, "{value}");
    }
    assert_eq!(
        server
            .ok("editWebhook", json!([server.key, as_text, []]))
            .await,
        true
    );
    let w = server
        .ok(
            "getWebhookById",
            json!({"api_key": server.key, "webhook_id": as_text}),
        )
        .await;
    assert_eq!(w["id"], id);
    // Paging as strings; counting with `[]` criteria.
    let found = server
        .ok("searchWebhooks", json!([server.key, [], "1", "0"]))
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(server.ok("countWebhooks", json!([server.key, []])).await, 1);
    // Events: list_id and contact_id as digits, data as `[]`.
    let event = server
        .ok(
            "addEvent",
            json!([server.key, {"object": "contact", "event": "subscribed",
                                "list_id": "12", "contact_id": "7", "data": []}]),
        )
        .await;
    let e = server
        .ok("getEventById", json!([server.key, event.to_string()]))
        .await;
    assert_eq!(
        (e["list_id"].clone(), e["contact_id"].clone()),
        (json!(12), json!(7))
    );
    assert_eq!(e["data"], json!({}));
    // Anything else is still a 310: a non-empty array is no object, and `[]` where details
    // are required still lacks them.
    refused(&server, json!({"metadata": [1]}), "metadata").await;
    refused(&server, json!({"auth": ["u", "p"]}), "auth").await;
    let (code, data) = server.err("addWebhook", json!([server.key, []])).await;
    assert_eq!(code, 310);
    let mut got = fields(&data);
    got.sort();
    assert_eq!(got, ["event", "object", "url"], "{data}");
    let (code, data) = server
        .err(
            "addEvent",
            json!([server.key, {"object": "contact", "event": "created", "data": [1]}]),
        )
        .await;
    assert_eq!(code, 310);
    assert_eq!(fields(&data), ["data"]);
}

#[tokio::test]
async fn unknown_keys_are_named() {
    let server = Server::start(&[]);
    let data = try_add(&server, json!({"foo": 1})).await.unwrap_err();
    assert_eq!(fields(&data), ["foo"]);
    assert_eq!(message_for(&data, "foo"), "Unknown argument foo");
    // A typo never passes silently, on edit either.
    let id = try_add(&server, json!({})).await.unwrap();
    let (code, data) = server
        .err("editWebhook", json!([server.key, id, {"is_activ": false}]))
        .await;
    assert_eq!(code, 310);
    assert_eq!(message_for(&data, "is_activ"), "Unknown argument is_activ");
    assert_eq!(
        server.ok("getWebhookById", json!([server.key, id])).await["is_active"],
        true
    );
}

#[tokio::test]
async fn every_problem_is_reported_at_once() {
    let server = Server::start(&[]);
    let data = try_add(
        &server,
        json!({
            "object": "list", "event": "subscribed", "url": "ftp://x", "name": "",
            "batch_size": 0, "list_id": -1, "is_active": "yes", "foo": 1,
            "headers": [{"name": "Host", "value": "v"}],
        }),
    )
    .await
    .unwrap_err();
    let mut got = fields(&data);
    got.sort();
    assert_eq!(
        got,
        [
            "batch_size",
            "event",
            "foo",
            "headers[0].name",
            "is_active",
            "list_id",
            "name",
            "url"
        ],
        "{data}"
    );
    assert_eq!(count(&server).await, 0);
}

#[tokio::test]
async fn edit_validates_the_same_rules_and_the_merged_result() {
    let server = Server::start(&[]);
    let id = server
        .ok("addWebhook", json!([server.key, hook("e")]))
        .await;
    let before = server.ok("getWebhookById", json!([server.key, id])).await;
    for (patch, field) in [
        (json!({"url": "ftp://x"}), "url"),
        (json!({"name": ""}), "name"),
        (json!({"name": " \t "}), "name"),
        (json!({"url": "http:///example.com/x"}), "url"),
        (json!({"url": "http://@example.com/x"}), "url"),
        (
            json!({"auth": {"username": "u", "password": "p\u{7f}"}}),
            "auth.password",
        ),
        (
            json!({"auth": {"username": "u\u{0}", "password": "p"}}),
            "auth.username",
        ),
        (
            json!({"headers": [{"name": " ", "value": "x"}]}),
            "headers[0].name",
        ),
        (json!({"batch_size": 1001}), "batch_size"),
        (
            json!({"headers": [{"name": "Content-Type", "value": "x"}]}),
            "headers[0].name",
        ),
        (json!({"secret": "whsec_short"}), "secret"),
        (json!({"object": "dog"}), "object"),
        // The event alone is fine for a list, not for this contact webhook's object…
        (json!({"event": "bulk_updated"}), "event"),
        // …and the object alone leaves the contact event behind.
        (json!({"object": "list"}), "event"),
        (json!({"metadata": null}), "metadata"),
    ] {
        let (code, data) = server
            .err("editWebhook", json!([server.key, id, patch]))
            .await;
        assert_eq!(code, 310, "{patch}");
        assert!(fields(&data).iter().any(|f| f == field), "{patch}: {data}");
    }
    // A patch with a good key and a bad one changes nothing.
    let (code, data) = server
        .err(
            "editWebhook",
            json!([server.key, id, {"name": "good", "batch_size": 0, "url": "nope"}]),
        )
        .await;
    assert_eq!(code, 310);
    assert_eq!(fields(&data).len(), 2, "{data}");
    assert_eq!(
        server.ok("getWebhookById", json!([server.key, id])).await,
        before
    );
    // Both object and event together are fine.
    server
        .ok(
            "editWebhook",
            json!([server.key, id, {"object": "list", "event": "bulk_updated"}]),
        )
        .await;
}

#[tokio::test]
async fn webhook_ids_must_be_positive_integers() {
    let server = Server::start(&[]);
    let id = server
        .ok("addWebhook", json!([server.key, hook("i")]))
        .await;
    for bad in [
        json!("1.0"),
        json!("0"),
        json!("one"),
        json!(0),
        json!(-3),
        json!(1.5),
        json!([1]),
        json!({}),
    ] {
        for method in [
            "getWebhookById",
            "deleteWebhook",
            "rotateWebhookSecret",
            "testWebhook",
        ] {
            let (code, data) = server.err(method, json!([server.key, bad])).await;
            assert_eq!(code, 310, "{method} {bad}");
            assert_eq!(fields(&data), ["webhook_id"], "{method} {bad}: {data}");
        }
        let (code, data) = server
            .err("editWebhook", json!([server.key, bad, {"name": "x"}]))
            .await;
        assert_eq!(code, 310);
        assert_eq!(fields(&data), ["webhook_id"]);
    }
    for method in [
        "getWebhookById",
        "deleteWebhook",
        "rotateWebhookSecret",
        "testWebhook",
    ] {
        let (code, data) = server.err(method, json!([server.key])).await;
        assert_eq!(code, 310, "{method} without an id");
        assert_eq!(fields(&data), ["webhook_id"]);
    }
    let (code, data) = server.err("editWebhook", json!([server.key, id])).await;
    assert_eq!(code, 310);
    assert_eq!(fields(&data), ["webhook_details"]);
    let (code, data) = server
        .err("editWebhook", json!([server.key, id, "name=x"]))
        .await;
    assert_eq!(code, 310);
    assert_eq!(fields(&data), ["webhook_details"]);
    assert_eq!(count(&server).await, 1);
}

#[tokio::test]
async fn an_acknowledged_add_survives_kill_9() {
    let mut server = Server::start(&[]);
    let id = server
        .ok("addWebhook", json!([server.key, hook("crash")]))
        .await;
    server
        .ok("editWebhook", json!([server.key, id, {"name": "edited"}]))
        .await;
    let before = server.ok("getWebhookById", json!([server.key, id])).await;
    server.kill9();
    server.restart();
    assert_eq!(
        server.ok("getWebhookById", json!([server.key, id])).await,
        before
    );
    assert_eq!(before["name"], "edited");
}

#[tokio::test]
async fn read_only_fields_are_unknown_arguments() {
    let server = Server::start(&[]);
    let id = server
        .ok("addWebhook", json!([server.key, hook("ro")]))
        .await;
    let before = server.ok("getWebhookById", json!([server.key, id])).await;
    for field in [
        "id",
        "circuit_state",
        "consecutive_failures",
        "last_error",
        "last_success_time",
        "creation_time",
        "last_modified_time",
    ] {
        let (code, data) = server
            .err(
                "editWebhook",
                json!([server.key, id, {field: before[field]}]),
            )
            .await;
        assert_eq!(code, 310, "{field}");
        assert_eq!(
            message_for(&data, field),
            format!("Unknown argument {field}")
        );
        let (code, _) = server
            .err(
                "addWebhook",
                json!([server.key, {"object": "list", "event": "created",
                "url": "https://example.com/ro2", field: before[field]}]),
            )
            .await;
        assert_eq!(code, 310, "{field}");
    }
    assert_eq!(
        server.ok("getWebhookById", json!([server.key, id])).await,
        before
    );
    assert_eq!(count(&server).await, 1);
}

#[tokio::test]
async fn an_edit_may_take_the_identity_of_a_deleted_webhook() {
    let server = Server::start(&[]);
    let gone = server
        .ok("addWebhook", json!([server.key, hook("x")]))
        .await;
    let kept = server
        .ok("addWebhook", json!([server.key, hook("y")]))
        .await;
    server.ok("deleteWebhook", json!([server.key, gone])).await;
    server
        .ok(
            "editWebhook",
            json!([server.key, kept, {"url": "https://example.com/x"}]),
        )
        .await;
    let w = server.ok("getWebhookById", json!([server.key, kept])).await;
    assert_eq!(w["url"], "https://example.com/x");
}

/// Fires `n` addWebhook calls at once; returns each reply.
async fn concurrent_adds(server: &Arc<Server>, details: impl Fn(usize) -> Value) -> Vec<Value> {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..20 {
        let server = server.clone();
        let d = details(i);
        calls.spawn(async move { server.rpc("addWebhook", json!([server.key, d])).await });
    }
    let mut replies = Vec::new();
    while let Some(r) = calls.join_next().await {
        replies.push(r.expect("task"));
    }
    replies
}

fn codes(replies: &[Value]) -> (usize, Vec<i64>) {
    let ok = replies.iter().filter(|r| r.get("error").is_none()).count();
    let mut errors: Vec<i64> = replies
        .iter()
        .filter_map(|r| r["error"]["code"].as_i64())
        .collect();
    errors.dedup();
    (ok, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_let_exactly_one_through() {
    let server = Arc::new(Server::start(&["--max-concurrent-calls", "100"]));
    let replies = concurrent_adds(&server, |_| hook("same")).await;
    assert_eq!(codes(&replies), (1, vec![351]), "{replies:?}");
    assert_eq!(count(&server).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_never_pass_the_limit() {
    let server = Arc::new(Server::start(&[
        "--max-concurrent-calls",
        "100",
        "--max-webhooks",
        "5",
    ]));
    let replies = concurrent_adds(&server, |i| hook(&format!("n{i}"))).await;
    assert_eq!(codes(&replies), (5, vec![355]), "{replies:?}");
    assert_eq!(count(&server).await, 5);
}

/// A secret replaced by `editWebhook` is a rotation like `rotateWebhookSecret`: receivers that
/// still hold the old secret keep verifying for 24 h.
#[tokio::test]
async fn a_secret_changed_by_edit_keeps_signing_beside_the_new_one() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let new = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let mut details = webhook(&receiver.url("/hook"));
    details["secret"] = json!(old);
    let id = server.ok("addWebhook", json!([server.key, details])).await;
    let edited = server
        .ok("editWebhook", json!([server.key, id, {"secret": new}]))
        .await;
    assert_eq!(edited, json!(true));
    server.ok("testWebhook", json!([server.key, id])).await;
    let got = eventually("the ping", std::time::Duration::from_secs(30), || async {
        receiver.received().into_iter().next()
    })
    .await;
    let signatures = got.headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    for secret in [old, new] {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&got.body, &got.headers)
            .unwrap_or_else(|e| panic!("{secret} does not verify: {e:?}"));
    }
    let third = server.ok("getWebhookById", json!([server.key, id])).await;
    assert_eq!(third["secret"], json!(new));
}
