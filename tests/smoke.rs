mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn an_event_reaches_a_real_receiver_signed() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    let id = server
        .ok(
            "addWebhook",
            json!([server.key, webhook(&receiver.url("/hook"))]),
        )
        .await;
    let event = server
        .ok(
            "addEvent",
            json!([server.key, {"object": "contact", "event": "subscribed", "contact_id": 5}]),
        )
        .await;
    let got = eventually("delivery", Duration::from_secs(10), || async {
        let r = receiver.received();
        (!r.is_empty()).then_some(r)
    })
    .await;
    let items = got[0].items();
    assert_eq!(items[0]["id"], event);
    assert_eq!(items[0]["webhook_id"], id);
    let secret = server.ok("getWebhookById", json!([server.key, id])).await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    verifier
        .verify(&got[0].body, &got[0].headers)
        .expect("signature verifies with the Standard Webhooks library");
}
