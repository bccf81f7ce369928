//! Security as tests: account isolation on every method of the server's table (a new method
//! cannot be skipped), secrets hidden from standard keys, and neither keys nor secrets in the
//! logs even at the most verbose level. The outbound guard is tested in delivery_failures.rs.

mod common;
use common::*;
use hookrpc::api::METHODS;
use serde_json::{json, Value};
use std::time::Duration;

/// Account A's objects: a webhook, an event fanned out to it, and that event's delivery.
struct Owned {
    webhook: Value,
    event: Value,
    delivery: Value,
}

async fn populate(server: &Server, key: &str, receiver: &Receiver) -> Owned {
    let details = json!({
        "object": "contact", "event": "created", "url": receiver.url("/a"),
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "auth": {"username": "user-a", "password": "PASSWORD-OF-A"},
        "headers": [{"name": "x-api-token", "value": "HEADER-OF-A"}],
    });
    let webhook = server.ok("addWebhook", json!([key, details])).await;
    let event = server
        .ok(
            "addEvent",
            json!([key, {"object": "contact", "event": "created"}]),
        )
        .await;
    let delivery = server.delivery_of(&event).await;
    server.delivery_with_status(&delivery, "succeeded").await;
    Owned {
        webhook,
        event,
        delivery,
    }
}

#[tokio::test]
async fn no_method_lets_one_account_see_or_touch_another_accounts_objects() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    let a = server.key.clone();
    let b = server.add_key("b", "full");
    let owned = populate(&server, &a, &receiver).await;
    let before = server.ok("getWebhookById", json!([a, owned.webhook])).await;

    // Reads and changes first, while B owns nothing; B's own additions last.
    let adds_last = METHODS
        .iter()
        .filter(|m| !m.name.starts_with("add"))
        .chain(METHODS.iter().filter(|m| m.name.starts_with("add")));
    for method in adds_last {
        let name = method.name;
        let by_id = |id: &Value| json!([b, id]);
        match name {
            "getWebhookById" | "deleteWebhook" | "rotateWebhookSecret" | "testWebhook" => {
                assert_eq!(
                    server.err(name, by_id(&owned.webhook)).await.0,
                    350,
                    "{name}"
                );
            }
            "editWebhook" => {
                let edit = json!([b, owned.webhook, {"name": "hijacked"}]);
                assert_eq!(server.err(name, edit).await.0, 350, "{name}");
            }
            "getEventById" => {
                assert_eq!(server.err(name, by_id(&owned.event)).await.0, 352, "{name}");
            }
            "getDeliveryById" | "retryDelivery" => {
                assert_eq!(
                    server.err(name, by_id(&owned.delivery)).await.0,
                    353,
                    "{name}"
                );
            }
            "searchWebhooks" | "searchEvents" | "searchDeliveries" => {
                assert_eq!(server.ok(name, json!([b])).await, json!([]), "{name}");
            }
            "countWebhooks" | "countEvents" | "countDeliveries" => {
                assert_eq!(server.ok(name, json!([b])).await, 0, "{name}");
            }
            "getDeliveryStats" => {
                assert_eq!(
                    server.err(name, by_id(&owned.webhook)).await.0,
                    350,
                    "{name}"
                );
                // B's account-wide statistics count none of A's attempts.
                let b_sees = server.ok(name, json!([b])).await;
                assert_eq!(bucket_sum(&b_sees, "attempts"), 0, "{name}");
                let a_sees = server.ok(name, json!([a])).await;
                assert_eq!(bucket_sum(&a_sees, "attempts"), 1, "{name}: A's own");
            }
            "retryDeliveries" => {
                let anything = json!([["status", "in", "failed,cancelled"]]);
                assert_eq!(server.ok(name, json!([b, anything])).await, 0, "{name}");
            }
            "addWebhook" => {
                // The same details in another account are not a duplicate of A's webhook.
                let same =
                    json!({"object": "contact", "event": "created", "url": receiver.url("/a")});
                server.ok(name, json!([b, same])).await;
            }
            "addEvent" | "addEvents" => {
                let event = json!({"object": "list", "event": "created"});
                let params = if name == "addEvent" {
                    json!([b, event])
                } else {
                    json!([b, [event]])
                };
                server.ok(name, params).await;
            }
            other => panic!("{other}: add it to the isolation test"),
        }
    }
    // B's calls changed nothing of A's: same webhook, no extra deliveries, one request.
    let after = server.ok("getWebhookById", json!([a, owned.webhook])).await;
    assert_eq!(after, before);
    assert_eq!(server.ok("countDeliveries", json!([a])).await, 1);
    assert_eq!(server.ok("countWebhooks", json!([a])).await, 1);
    // B's own webhook is B's: A cannot see it either.
    assert_eq!(server.ok("countWebhooks", json!([b])).await, 1);
    let theirs = server.ok("searchWebhooks", json!([b])).await[0]["id"].clone();
    assert_eq!(
        server.err("getWebhookById", json!([a, theirs])).await.0,
        350
    );
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn standard_keys_never_see_secrets_and_cannot_change_anything() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    let owned = populate(&server, &server.key, &receiver).await;
    let standard = server.add_key("default", "standard");

    let one = server
        .ok("getWebhookById", json!([standard, owned.webhook]))
        .await;
    let all = server.ok("searchWebhooks", json!([standard])).await;
    for webhook in [&one, &all[0]] {
        assert!(webhook.get("secret").is_none(), "{webhook}");
        assert_eq!(webhook["auth"]["password"], "********");
        // Header values are credentials as often as not (bearer tokens): masked too, the
        // names still shown so that a reader knows which headers are sent.
        assert_eq!(
            webhook["headers"],
            json!([{"name": "x-api-token", "value": "********"}]),
            "{webhook}"
        );
    }
    let text = format!("{one}{all}");
    assert!(!text.contains("whsec_"), "{text}");
    assert!(!text.contains("PASSWORD-OF-A"), "{text}");
    assert!(!text.contains("HEADER-OF-A"), "{text}");
    // A full key sees the secret and header values, but never the Basic auth password.
    let full = server
        .ok("getWebhookById", json!([server.key, owned.webhook]))
        .await;
    assert!(full["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(full["auth"]["password"], "********");
    assert_eq!(
        full["headers"],
        json!([{"name": "x-api-token", "value": "HEADER-OF-A"}])
    );
    let full_search = server.ok("searchWebhooks", json!([server.key])).await;
    assert_eq!(full_search[0]["headers"], full["headers"]);

    for method in METHODS.iter().filter(|m| m.access.as_str() == "full") {
        let params = match method.name {
            "addWebhook" => json!([standard, webhook(&receiver.url("/b"))]),
            "editWebhook" => json!([standard, owned.webhook, {"name": "x"}]),
            "retryDelivery" => json!([standard, owned.delivery]),
            _ => json!([standard, owned.webhook]),
        };
        let (code, data) = server.err(method.name, params).await;
        assert_eq!(code, 321, "{}", method.name);
        assert_eq!(data["required_access"], "full", "{}: {data}", method.name);
    }
    let after = server
        .ok("getWebhookById", json!([server.key, owned.webhook]))
        .await;
    assert_eq!(after["secret"], full["secret"]);
    assert_eq!(after["name"], full["name"]);
}

#[tokio::test]
async fn keys_and_secrets_never_reach_the_logs() {
    let receiver = Receiver::start().await;
    let server = Server::start_logging(FAST, "trace");
    let owned = populate(&server, &server.key, &receiver).await;
    let rotated = server
        .ok("rotateWebhookSecret", json!([server.key, owned.webhook]))
        .await;
    server
        .ok(
            "editWebhook",
            json!([server.key, owned.webhook, {"auth": {"username": "u", "password": "EDITED-PASSWORD"}}]),
        )
        .await;
    server
        .ok("testWebhook", json!([server.key, owned.webhook]))
        .await;
    // Failing calls log too: a wrong key, a bad parameter, a Vision6-dialect call.
    let wrong_key = "f".repeat(64);
    server.err("countWebhooks", json!([wrong_key])).await;
    server
        .err("addWebhook", json!([server.key, {"secret": "whsec_bad"}]))
        .await;
    let v1 = json!({"id": 1, "method": "getWebhookById", "params": [server.key, owned.webhook]});
    server
        .post_raw("/api/jsonrpcserver.php", v1.to_string())
        .await;
    eventually("the ping", Duration::from_secs(30), || async {
        (receiver.received().len() >= 2).then_some(())
    })
    .await;

    let logs = server.stderr();
    assert!(
        logs.contains("getWebhookById"),
        "the log is verbose: {logs:.2000}"
    );
    for secret in [
        server.key.as_str(),
        wrong_key.as_str(),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        rotated.as_str().unwrap(),
        "PASSWORD-OF-A",
        "EDITED-PASSWORD",
        "HEADER-OF-A",
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the log");
    }
}
