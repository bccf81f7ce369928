//! The same methods over a WebSocket upgrade on the same port (API.md §1). WebSocket frames
//! carry JSON-RPC 2.0; the Vision6 dialect is an HTTP-only convention.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn call(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    id: u64,
    method: &str,
    params: Value,
) -> Value {
    let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::text(request.to_string())).await.unwrap();
    loop {
        match ws.next().await.expect("a reply").expect("a frame") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_websocket_session_adds_reads_and_is_refused_like_http() {
    let server = Server::start(&[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", server.addr))
        .await
        .expect("upgrade");
    let key = server.key.clone();

    let added = call(
        &mut ws,
        1,
        "addWebhook",
        json!([key, webhook("https://example.com/ws")]),
    )
    .await;
    assert_eq!(added, json!({"jsonrpc": "2.0", "id": 1, "result": 1}));

    let got = call(
        &mut ws,
        2,
        "getWebhookById",
        json!({"api_key": key, "webhook_id": 1}),
    )
    .await;
    assert_eq!(got["result"]["url"], "https://example.com/ws");

    let bad = call(
        &mut ws,
        3,
        "addWebhook",
        json!([key, {"object": "contact"}]),
    )
    .await;
    assert_eq!(bad["error"]["code"], 310);
    let fields: Vec<&str> = bad["error"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["event", "url"]);

    let wrong_key = call(&mut ws, 4, "countWebhooks", json!(["0".repeat(64)])).await;
    assert_eq!(wrong_key["error"]["code"], 300);

    // Whatever went over the socket is what HTTP sees.
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 1);
}
