//! Two calls racing on one webhook: every acknowledged change is still in place afterwards
//! (no lost updates). Each pair runs many times, so an edit that reads outside its write
//! transaction loses one of the two in a good share of the trials.

mod common;

use common::{webhook, Receiver, Server};
use serde_json::{json, Value};

const TRIALS: usize = 60;

async fn new_webhook(server: &Server, url: &str) -> Value {
    server
        .ok("addWebhook", json!([server.key, webhook(url)]))
        .await
}

async fn get(server: &Server, id: &Value) -> Value {
    server.ok("getWebhookById", json!([server.key, id])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_never_undoes_a_rotation() {
    let server = Server::start(&["--allow-private-targets"]);
    let receiver = Receiver::start().await;
    let id = new_webhook(&server, &receiver.url("/")).await;
    for trial in 0..TRIALS {
        let name = format!("name {trial}");
        let (_, secret) = tokio::join!(
            server.ok(
                "editWebhook",
                json!([server.key, id, {"name": name.clone()}])
            ),
            server.ok("rotateWebhookSecret", json!([server.key, id])),
        );
        let now = get(&server, &id).await;
        assert_eq!(now["secret"], secret, "trial {trial}: rotation lost");
        assert_eq!(now["name"], json!(name), "trial {trial}: edit lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_edits_of_different_fields_both_stay() {
    let server = Server::start(&["--allow-private-targets"]);
    let receiver = Receiver::start().await;
    let id = new_webhook(&server, &receiver.url("/")).await;
    for trial in 0..TRIALS {
        let name = format!("name {trial}");
        let description = format!("description {trial}");
        tokio::join!(
            server.ok(
                "editWebhook",
                json!([server.key, id, {"name": name.clone()}])
            ),
            server.ok(
                "editWebhook",
                json!([server.key, id, {"description": description.clone()}])
            ),
        );
        let now = get(&server, &id).await;
        assert_eq!(now["name"], json!(name), "trial {trial}");
        assert_eq!(now["description"], json!(description), "trial {trial}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deactivation_survives_a_url_edit() {
    let server = Server::start(&["--allow-private-targets"]);
    let receiver = Receiver::start().await;
    for trial in 0..TRIALS {
        let id = new_webhook(&server, &receiver.url(&format!("/{trial}"))).await;
        let url = receiver.url(&format!("/{trial}/moved"));
        tokio::join!(
            server.ok("editWebhook", json!([server.key, id, {"is_active": false}])),
            server.ok("editWebhook", json!([server.key, id, {"url": url.clone()}])),
        );
        let now = get(&server, &id).await;
        assert_eq!(now["is_active"], false, "trial {trial}: deactivation lost");
        assert_eq!(now["url"], json!(url), "trial {trial}: url edit lost");
    }
}
