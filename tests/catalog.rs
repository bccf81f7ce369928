//! The event catalog: a deployment's own objects and events from a TOML file, checked at start,
//! printed by `hookrpc catalog`, enforced by validation, served in `rpc.discover`, and guarded
//! against dropping what live webhooks use.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;

const SHOP: &str = r#"
# Commerce Layer-style topics
[objects]
orders    = ["place", "cancel", "fulfill"]
customers = ["create", "update"]
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn problems(data: &Value) -> String {
    data.to_string()
}

#[tokio::test]
async fn a_deployment_publishes_its_own_events() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = write(dir.path(), "shop.toml", SHOP);
    let server = Server::start(&["--allow-private-targets", "--catalog", &catalog]);
    let receiver = Receiver::start().await;
    let details = json!({"object": "orders", "event": "place", "url": receiver.url("/")});
    server.ok("addWebhook", json!([server.key, details])).await;
    let id = server
        .ok(
            "addEvent",
            json!([server.key, {"object": "orders", "event": "place", "data": {"total": 12}}]),
        )
        .await;
    server
        .delivery_with_status(&server.delivery_of(&id).await, "succeeded")
        .await;
    assert_eq!(receiver.items()[0]["event"], "place");

    // Vision6's objects are not in this catalog; the message lists what is.
    let (code, data) = server
        .err(
            "addWebhook",
            json!([server.key, webhook(&receiver.url("/x"))]),
        )
        .await;
    assert_eq!(code, 310);
    assert!(
        problems(&data).contains("orders, customers, webhook, delivery"),
        "{data}"
    );
    let (code, data) = server
        .err(
            "addEvent",
            json!([server.key, {"object": "orders", "event": "refund"}]),
        )
        .await;
    assert_eq!(code, 310);
    assert!(problems(&data).contains("place, cancel, fulfill"), "{data}");
    // hookrpc's own objects are in every catalog.
    let ops = json!({"object": "webhook", "event": "circuit_opened", "url": receiver.url("/ops")});
    server.ok("addWebhook", json!([server.key, ops])).await;

    let doc = server.ok("rpc.discover", json!([])).await;
    assert_eq!(
        doc["components"]["schemas"]["Object"]["enum"],
        json!(["orders", "customers", "webhook", "delivery"])
    );
    let rules = &doc["components"]["schemas"]["WebhookDetailsNew"]["allOf"];
    assert_eq!(
        rules[1]["then"]["properties"]["event"]["enum"],
        json!(["create", "update"])
    );
    // The prose says the same as the rules: this catalog's events, not Vision6's.
    for schema in ["WebhookDetailsNew", "WebhookDetailsEdit"] {
        let description = doc["components"]["schemas"][schema]["description"].to_string();
        assert!(
            description.contains(
                "must apply to the object: orders has place, cancel, fulfill; customers has create, update."
            ),
            "{description}"
        );
        assert!(!description.contains("contact"), "{description}");
    }
    // The examples are a session with Vision6's catalog (webhook 1, delivery 2, …): most would
    // be refused here, and the rest name what was never made. None is served.
    let methods = doc["methods"].as_array().unwrap();
    assert!(methods.iter().all(|m| m.get("examples").is_none()), "{doc}");
}

#[test]
fn hookrpc_catalog_prints_the_active_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, default) = run_to_exit(&["catalog"]);
    assert_eq!(code, Some(0));
    assert!(
        default.contains(r#"list = ["created", "updated", "removed", "bulk_updated"]"#),
        "{default}"
    );
    assert!(default.contains("# webhook = "), "{default}");
    let catalog = write(dir.path(), "shop.toml", SHOP);
    let (code, _, shop) = run_to_exit(&["catalog", "--catalog", &catalog]);
    assert_eq!(code, Some(0));
    assert!(
        shop.contains(r#"orders = ["place", "cancel", "fulfill"]"#),
        "{shop}"
    );
    assert!(!shop.contains("list ="), "{shop}");
    // What it prints is a catalog file again.
    let again = write(dir.path(), "again.toml", &shop);
    let (_, _, reprinted) = run_to_exit(&["catalog", "--catalog", &again]);
    assert_eq!(reprinted, shop);
}

#[test]
fn a_bad_catalog_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db").to_string_lossy().into_owned();
    for (text, words) in [
        (
            "[objects]\nOrders = [\"place\"]",
            "starts with a lowercase letter",
        ),
        ("[objects]\norders = []", "orders: has no events"),
        (
            "[objects]\norders = [\"a\", \"a\"]",
            "orders.a: listed twice",
        ),
        ("[objects]\nwebhook = [\"x\"]", "cannot be given"),
        ("[objects\n", "not TOML"),
    ] {
        let catalog = write(dir.path(), "bad.toml", text);
        let (code, stderr) = serve_to_exit(&db, &catalog);
        assert_eq!(code, Some(2), "{text:?}: {stderr}");
        assert!(stderr.contains(words), "{text:?}: {stderr}");
        assert!(stderr.contains("bad.toml"), "names the file: {stderr}");
    }
    let (code, stderr, _) = run_to_exit(&["catalog", "--catalog", "/nonexistent/c.toml"]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[tokio::test]
async fn dropping_what_live_webhooks_follow_is_refused_unless_pruned() {
    let mut server = Server::start(&["--allow-private-targets"]);
    let kept = server
        .ok(
            "addWebhook",
            json!([server.key, {"object": "list", "event": "created", "url": "https://hooks.acme.io/l"}]),
        )
        .await;
    let dropped = server
        .ok(
            "addWebhook",
            json!([server.key, webhook("https://hooks.acme.io/c")]),
        )
        .await;
    server.stop();
    // The new catalog keeps list.created but has no contact object at all.
    let catalog = write(
        server.dir.path(),
        "lists.toml",
        "[objects]\nlist = [\"created\"]\n",
    );
    let db = server.db().to_owned();
    let (code, stderr) = serve_to_exit(&db, &catalog);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("webhook {dropped} (contact.subscribed)")),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("webhook {kept} ")), "{stderr}");

    server.restart_with(&[
        "--allow-private-targets",
        "--catalog",
        &catalog,
        "--catalog-prune",
    ]);
    let (code, _) = server
        .err("getWebhookById", json!([server.key, dropped]))
        .await;
    assert_eq!(code, 350, "pruned");
    server.ok("getWebhookById", json!([server.key, kept])).await;
}
