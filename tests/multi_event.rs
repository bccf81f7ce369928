//! Webhooks that follow several events, or every event of their object (`["*"]`): delivery,
//! the Webhook's `event`/`events`, 310 for malformed `events`, 351 for overlapping webhooks, and
//! searches by an event followed. Vision6 clients that send one `event` see no change.
mod common;
use common::*;
use serde_json::{json, Value};

/// A webhook_details for `object` following `events`, at `url`.
fn following(object: &str, events: Value, url: &str) -> Value {
    json!({"object": object, "events": events, "url": url})
}

async fn add(server: &Server, details: Value) -> i64 {
    let id = server.ok("addWebhook", json!([server.key, details])).await;
    id.as_i64().expect("an id")
}

async fn get(server: &Server, id: i64) -> Value {
    server.ok("getWebhookById", json!([server.key, id])).await
}

/// Publishes `events` (object, event) in one call; returns each one's delivery_count.
async fn publish(server: &Server, events: &[(&str, &str)]) -> Vec<i64> {
    let details: Vec<Value> = events
        .iter()
        .map(|(object, event)| json!({"object": object, "event": event}))
        .collect();
    let ids = server.ok("addEvents", json!([server.key, details])).await;
    let mut counts = Vec::new();
    for id in ids.as_array().unwrap() {
        let event = server.ok("getEventById", json!([server.key, id])).await;
        counts.push(event["delivery_count"].as_i64().unwrap());
    }
    counts
}

/// The `event` of every item the receiver got, sorted.
async fn received_events(receiver: &Receiver, count: usize) -> Vec<String> {
    let items = eventually(
        "the deliveries",
        std::time::Duration::from_secs(30),
        || async {
            let items = receiver.items();
            (items.len() >= count).then_some(items)
        },
    )
    .await;
    let mut events: Vec<String> = items
        .iter()
        .map(|i| i["event"].as_str().unwrap().to_owned())
        .collect();
    events.sort();
    events
}

/// The fields named by a 310's `data`, in order.
fn fields(data: &Value) -> Vec<&str> {
    data.as_array()
        .unwrap_or_else(|| panic!("310 data is an array: {data}"))
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect()
}

/// addWebhook with `details` must be a 310; returns its `data`.
async fn refused(server: &Server, details: Value) -> Value {
    let (code, data) = server.err("addWebhook", json!([server.key, details])).await;
    assert_eq!(code, 310, "{data}");
    data
}

#[tokio::test]
async fn a_webhook_receives_each_event_it_lists_and_no_other() {
    let server = Server::start(FAST);
    let receiver = Receiver::start().await;
    let events = json!(["subscribed", "unsubscribed"]);
    add(&server, following("contact", events, &receiver.url("/"))).await;
    let counts = publish(
        &server,
        &[
            ("contact", "subscribed"),
            ("contact", "unsubscribed"),
            ("contact", "created"),
            ("list", "created"),
        ],
    )
    .await;
    assert_eq!(counts, [1, 1, 0, 0]);
    assert_eq!(
        received_events(&receiver, 2).await,
        ["subscribed", "unsubscribed"]
    );
}

#[tokio::test]
async fn every_event_reaches_a_webhook_that_follows_star_and_only_of_its_object() {
    let server = Server::start(FAST);
    let receiver = Receiver::start().await;
    add(
        &server,
        following("contact", json!(["*"]), &receiver.url("/")),
    )
    .await;
    let counts = publish(
        &server,
        &[
            ("contact", "created"),
            ("contact", "reactivated"),
            ("list", "created"),
        ],
    )
    .await;
    assert_eq!(counts, [1, 1, 0]);
    assert_eq!(
        received_events(&receiver, 2).await,
        ["created", "reactivated"]
    );
    // An inactive one gets nothing, as any webhook.
    let inactive = json!({"object": "list", "events": ["*"], "is_active": false,
                          "url": receiver.url("/off")});
    add(&server, inactive).await;
    assert_eq!(publish(&server, &[("list", "updated")]).await, [0]);
}

#[tokio::test]
async fn replies_show_the_single_event_or_null_and_always_the_events() {
    let server = Server::start(&[]);
    let url = |path: &str| format!("https://example.com/{path}");
    let several = add(
        &server,
        following("contact", json!(["unsubscribed", "subscribed"]), &url("a")),
    )
    .await;
    let w = get(&server, several).await;
    assert_eq!(w["event"], Value::Null);
    assert_eq!(
        w["events"],
        json!(["unsubscribed", "subscribed"]),
        "as given"
    );
    assert_eq!(w["name"], "contact", "the default name of several events");

    let every = add(&server, following("list", json!(["*"]), &url("b"))).await;
    let w = get(&server, every).await;
    assert_eq!((&w["event"], &w["events"]), (&Value::Null, &json!(["*"])));
    assert_eq!(w["name"], "list");

    let one = add(&server, following("list", json!(["created"]), &url("c"))).await;
    let w = get(&server, one).await;
    assert_eq!(
        (&w["event"], &w["events"]),
        (&json!("created"), &json!(["created"]))
    );
    assert_eq!(w["name"], "list.created");

    // An edit replaces what is followed, by either key.
    let edit = |details: Value| server.ok("editWebhook", json!([server.key, several, details]));
    edit(json!({"event": "created"})).await;
    let w = get(&server, several).await;
    assert_eq!(
        (&w["event"], &w["events"]),
        (&json!("created"), &json!(["created"]))
    );
    edit(json!({"events": ["*"]})).await;
    let w = get(&server, several).await;
    assert_eq!((&w["event"], &w["events"]), (&Value::Null, &json!(["*"])));
    assert_eq!(w["name"], "contact", "an edit keeps the name");

    // search shows the same webhooks as get.
    let found = server
        .ok(
            "searchWebhooks",
            json!([server.key, [["id", "exactly", every]]]),
        )
        .await;
    assert_eq!(found, json!([get(&server, every).await]));
}

/// A call in the Vision6 dialect (no `jsonrpc` member), as its PHP client sends it; returns the
/// reply, which has no `jsonrpc` member either.
async fn vision6(server: &Server, method: &str, params: Value) -> Value {
    let body = json!({"id": 1, "method": method, "params": params}).to_string();
    let (status, text) = server.post_raw("/api/jsonrpcserver", body).await;
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert!(reply.get("jsonrpc").is_none(), "{reply}");
    reply
}

#[tokio::test]
async fn a_vision6_client_sending_one_event_sees_no_change() {
    let server = Server::start(FAST);
    let receiver = Receiver::start().await;
    let details = json!({"object": "contact", "event": "subscribed", "url": receiver.url("/")});
    let id = vision6(&server, "addWebhook", json!([server.key, details])).await["result"].clone();
    let w = vision6(&server, "getWebhookById", json!([server.key, id])).await["result"].clone();
    assert_eq!(w["event"], "subscribed");
    assert_eq!(w["events"], json!(["subscribed"]));
    assert_eq!(w["name"], "contact.subscribed");
    let counts = publish(
        &server,
        &[("contact", "subscribed"), ("contact", "created")],
    )
    .await;
    assert_eq!(counts, [1, 0]);
    assert_eq!(received_events(&receiver, 1).await, ["subscribed"]);
    // The same details again are still a duplicate.
    let again = vision6(&server, "addWebhook", json!([server.key, details])).await;
    assert_eq!(again["error"]["code"], 351, "{again}");
}

#[tokio::test]
async fn malformed_events_are_310_with_one_entry_per_problem() {
    let server = Server::start(&[]);
    let url = "https://example.com/in";
    // Each duplicate is its own entry, naming its place.
    let data = refused(
        &server,
        following(
            "list",
            json!(["created", "updated", "created", "updated"]),
            url,
        ),
    )
    .await;
    assert_eq!(fields(&data), ["events[2]", "events[3]"], "{data}");
    // So is each unknown name, with the object's valid events listed.
    let data = refused(
        &server,
        following(
            "contact",
            json!(["created", "exploded", "bulk_updated"]),
            url,
        ),
    )
    .await;
    assert_eq!(fields(&data), ["events[1]", "events[2]"], "{data}");
    assert!(
        data[0]["message"].as_str().unwrap().contains("reactivated"),
        "{data}"
    );
    // Duplicates and unknown names at once; an unknown name given twice is one of each.
    let data = refused(
        &server,
        following("list", json!(["nope", "created", "nope", "created"]), url),
    )
    .await;
    let mut got = fields(&data);
    got.sort();
    assert_eq!(got, ["events[0]", "events[2]", "events[3]"], "{data}");
    // Both keys, or neither.
    let both = json!({"object": "list", "event": "created", "events": ["updated"], "url": url});
    assert_eq!(fields(&refused(&server, both).await), ["events"]);
    let data = refused(&server, json!({"object": "list", "url": url})).await;
    assert_eq!(fields(&data), ["event"], "{data}");
    // `*` only alone, and only in `events`.
    let data = refused(&server, following("list", json!(["created", "*"]), url)).await;
    assert_eq!(fields(&data), ["events[1]"], "{data}");
    let star = json!({"object": "list", "event": "*", "url": url});
    assert_eq!(fields(&refused(&server, star).await), ["event"]);
    // Not a list of 1 to 64 strings.
    for bad in [json!([]), json!("created"), json!(null), json!({"a": 1})] {
        let data = refused(&server, following("list", bad.clone(), url)).await;
        assert_eq!(fields(&data), ["events"], "{bad}: {data}");
    }
    let data = refused(&server, following("list", json!(["created", 7]), url)).await;
    assert_eq!(fields(&data), ["events[1]"], "{data}");
    // An edit is held to the same rules.
    let id = add(&server, following("list", json!(["created"]), url)).await;
    let (code, data) = server
        .err(
            "editWebhook",
            json!([server.key, id, {"events": ["removed", "removed"]}]),
        )
        .await;
    assert_eq!((code, fields(&data)), (310, vec!["events[1]"]), "{data}");
    let (code, data) = server
        .err(
            "editWebhook",
            json!([server.key, id, {"event": "removed", "events": ["removed"]}]),
        )
        .await;
    assert_eq!((code, fields(&data)), (310, vec!["events"]), "{data}");
    // Changing the object alone leaves list events behind that a contact does not have.
    let id = add(
        &server,
        following(
            "list",
            json!(["created", "bulk_updated"]),
            &format!("{url}/2"),
        ),
    )
    .await;
    let (code, data) = server
        .err(
            "editWebhook",
            json!([server.key, id, {"object": "contact"}]),
        )
        .await;
    assert_eq!((code, fields(&data)), (310, vec!["events[1]"]), "{data}");
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 2);
}

#[tokio::test]
async fn a_webhook_may_name_64_events_but_not_65() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..65).map(|i| format!("e{i}")).collect();
    let catalog = dir.path().join("big.toml");
    std::fs::write(&catalog, format!("[objects]\nbig = {names:?}\n")).unwrap();
    let server = Server::start(&["--catalog", catalog.to_str().unwrap()]);
    let url = "https://example.com/big";
    let data = refused(&server, following("big", json!(names), url)).await;
    assert_eq!(fields(&data), ["events"], "{data}");
    let id = add(&server, following("big", json!(names[..64]), url)).await;
    assert_eq!(get(&server, id).await["events"], json!(names[..64]));
}

#[tokio::test]
async fn webhooks_whose_events_overlap_are_351_on_add() {
    let server = Server::start(&[]);
    let url = "https://example.com/shared";
    add(
        &server,
        following("list", json!(["created", "updated"]), url),
    )
    .await;
    // Disjoint events at the same url are fine.
    add(&server, following("list", json!(["removed"]), url)).await;
    for overlapping in [
        following("list", json!(["bulk_updated", "updated"]), url),
        json!({"object": "list", "event": "created", "url": url}),
        following("list", json!(["*"]), url),
    ] {
        let reply = server
            .rpc("addWebhook", json!([server.key, overlapping]))
            .await;
        assert_eq!(reply["error"]["code"], 351, "{overlapping}: {reply}");
        assert_eq!(
            reply["error"]["message"],
            "Duplicate Webhook details not allowed"
        );
    }
    // Another url, list or object makes them distinct, even with every event.
    add(
        &server,
        following("list", json!(["*"]), "https://example.com/other"),
    )
    .await;
    add(
        &server,
        json!({"object": "list", "events": ["*"], "list_id": 3, "url": url}),
    )
    .await;
    add(&server, following("contact", json!(["*"]), url)).await;
    // …and `*` then overlaps whatever comes to its url.
    let (code, _) = server
        .err(
            "addWebhook",
            json!([
                server.key,
                following("contact", json!(["reactivated"]), url)
            ]),
        )
        .await;
    assert_eq!(code, 351);
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 5);
}

#[tokio::test]
async fn an_edit_that_would_overlap_is_351_and_changes_nothing() {
    let server = Server::start(&[]);
    let url = "https://example.com/shared";
    let first = add(
        &server,
        following("list", json!(["created", "updated"]), url),
    )
    .await;
    let second = add(&server, following("list", json!(["removed"]), url)).await;
    let elsewhere = add(
        &server,
        following("list", json!(["updated"]), "https://example.com/2"),
    )
    .await;
    let contact = add(&server, following("contact", json!(["created"]), url)).await;
    for (id, change) in [
        (second, json!({"events": ["removed", "updated"]})),
        (second, json!({"events": ["*"]})),
        (second, json!({"event": "created"})),
        (elsewhere, json!({"url": url})),
        (contact, json!({"object": "list"})),
    ] {
        let before = get(&server, id).await;
        let (code, _) = server
            .err("editWebhook", json!([server.key, id, change]))
            .await;
        assert_eq!(code, 351, "{change}");
        assert_eq!(get(&server, id).await, before, "{change} changed nothing");
    }
    // Disjoint edits go through, and a webhook never overlaps itself.
    server
        .ok(
            "editWebhook",
            json!([server.key, second, {"events": ["removed", "bulk_updated"]}]),
        )
        .await;
    server
        .ok(
            "editWebhook",
            json!([server.key, first, {"events": ["updated", "created"]}]),
        )
        .await;
    // A deleted webhook no longer counts.
    server.ok("deleteWebhook", json!([server.key, first])).await;
    server
        .ok("editWebhook", json!([server.key, elsewhere, {"url": url}]))
        .await;
}

#[tokio::test]
async fn search_and_count_select_webhooks_by_an_event_they_follow() {
    let server = Server::start(&[]);
    let url = |path: &str| format!("https://example.com/{path}");
    let one = add(
        &server,
        json!({"object": "contact", "event": "subscribed", "url": url("1")}),
    )
    .await;
    let two = add(
        &server,
        following("contact", json!(["subscribed", "unsubscribed"]), &url("2")),
    )
    .await;
    let every = add(&server, following("contact", json!(["*"]), &url("3"))).await;
    let list = add(&server, following("list", json!(["created"]), &url("4"))).await;
    let find = |criteria: Value| {
        let server = &server;
        async move {
            let found = server
                .ok("searchWebhooks", json!([server.key, criteria]))
                .await;
            let ids: Vec<i64> = found
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["id"].as_i64().unwrap())
                .collect();
            let count = server
                .ok("countWebhooks", json!([server.key, criteria]))
                .await;
            assert_eq!(count, ids.len(), "count agrees with search for {criteria}");
            ids
        }
    };
    assert_eq!(
        find(json!([["event", "exactly", "unsubscribed"]])).await,
        [two, every]
    );
    assert_eq!(
        find(json!([["event", "exactly", "subscribed"]])).await,
        [one, two, every]
    );
    assert_eq!(find(json!([["event", "not", "subscribed"]])).await, [list]);
    assert_eq!(
        find(json!([
            ["event", "in", "created,unsubscribed"],
            ["object", "exactly", "contact"]
        ]))
        .await,
        [two, every]
    );
    assert_eq!(
        find(json!([["event", "starts_with", "unsub"]])).await,
        [two, every]
    );
    assert_eq!(
        find(json!([["event", "exactly", null]])).await,
        Vec::<i64>::new()
    );
    // A deleted webhook is found no more.
    server.ok("deleteWebhook", json!([server.key, two])).await;
    assert_eq!(
        find(json!([["event", "exactly", "unsubscribed"]])).await,
        [every]
    );
    // Sorting by event is still allowed: webhooks of one event in the order of its name.
    let sorted = server
        .ok(
            "searchWebhooks",
            json!([server.key, [["id", "not", every]], 0, 0, "event", "ASC"]),
        )
        .await;
    let ids: Vec<&Value> = sorted
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["id"])
        .collect();
    assert_eq!(ids, [list, one]);
}

#[tokio::test]
async fn a_catalog_change_is_judged_by_each_event_a_webhook_names() {
    let mut server = Server::start(&[]);
    let several = add(
        &server,
        following(
            "contact",
            json!(["subscribed", "deactivated"]),
            "https://example.com/a",
        ),
    )
    .await;
    let every = add(
        &server,
        following("list", json!(["*"]), "https://example.com/b"),
    )
    .await;
    server.stop();
    let db = server.db().to_owned();
    let start_with = |catalog: &str| {
        let path = server.dir.path().join("c.toml");
        std::fs::write(&path, catalog).unwrap();
        let path = path.to_string_lossy().into_owned();
        let (code, stderr) = serve_to_exit(&db, &path);
        assert_eq!(code, Some(2), "{stderr}");
        stderr
    };
    // Dropping one of its events refuses the start, naming what is gone; a webhook that
    // follows every list event holds no list event, only the object.
    let stderr = start_with("[objects]\ncontact = [\"subscribed\"]\nlist = [\"created\"]\n");
    assert!(
        stderr.contains(&format!("webhook {several} (contact.deactivated)")),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("webhook {every} ")), "{stderr}");
    let stderr = start_with("[objects]\ncontact = [\"subscribed\", \"deactivated\"]\n");
    assert!(
        stderr.contains(&format!("webhook {every} (list.*)")),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("webhook {several} ")), "{stderr}");
}
