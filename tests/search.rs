//! Vision6 search criteria over HTTP: the eight operators, paging and sorting, 311 for
//! malformed criteria, and values that reach SQL only as bound parameters.
mod common;
use common::*;
use serde_json::{json, Value};

/// Five webhooks with distinct names, lists, batch sizes and states; returns their ids in
/// the order added (ascending).
async fn seed(server: &Server) -> Vec<i64> {
    let rows = [
        ("alpha", "contact", "created", 1, 10, true),
        ("beta", "contact", "updated", 2, 20, false),
        ("gamma", "list", "created", 3, 30, true),
        ("alphabet", "list", "removed", 4, 40, true),
        ("100% real_deal", "contact", "removed", 5, 50, true),
    ];
    let mut ids = Vec::new();
    for (i, (name, object, event, list_id, batch_size, is_active)) in rows.into_iter().enumerate() {
        let id = server
            .ok(
                "addWebhook",
                json!([server.key, {
                    "name": name, "object": object, "event": event, "list_id": list_id,
                    "batch_size": batch_size, "is_active": is_active,
                    "url": format!("https://h{i}.example.com/in"),
                    "description": format!("webhook number {i}"),
                }]),
            )
            .await;
        ids.push(id.as_i64().unwrap());
    }
    ids
}

fn ids_of(found: &Value) -> Vec<i64> {
    found
        .as_array()
        .unwrap_or_else(|| panic!("an array: {found}"))
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect()
}

/// Ids found with `criteria`, and the count agrees.
async fn find(server: &Server, criteria: Value) -> Vec<i64> {
    let found = server
        .ok("searchWebhooks", json!([server.key, criteria]))
        .await;
    let ids = ids_of(&found);
    let count = server
        .ok("countWebhooks", json!([server.key, criteria]))
        .await;
    assert_eq!(count, ids.len(), "count agrees with search for {criteria}");
    ids
}

/// The ids of `all` at the given (0-based) positions.
fn pick(all: &[i64], at: &[usize]) -> Vec<i64> {
    at.iter().map(|&i| all[i]).collect()
}

#[tokio::test]
async fn all_eight_operators() {
    let server = Server::start(&[]);
    let w = seed(&server).await;

    assert_eq!(
        find(&server, json!([["name", "exactly", "beta"]])).await,
        pick(&w, &[1])
    );
    assert_eq!(
        find(&server, json!([["name", "not", "beta"]])).await,
        pick(&w, &[0, 2, 3, 4])
    );
    assert_eq!(
        find(&server, json!([["batch_size", "greater_than", 20]])).await,
        pick(&w, &[2, 3, 4])
    );
    assert_eq!(
        find(&server, json!([["list_id", "less_than", 3]])).await,
        pick(&w, &[0, 1])
    );
    assert_eq!(
        find(&server, json!([["list_id", "in", [1, 3]]])).await,
        pick(&w, &[0, 2])
    );
    assert_eq!(
        find(&server, json!([["list_id", "in", "1, 3,5"]])).await,
        pick(&w, &[0, 2, 4]),
        "comma-separated string"
    );
    assert_eq!(
        find(&server, json!([["name", "in", "alpha,gamma"]])).await,
        pick(&w, &[0, 2])
    );
    assert_eq!(
        find(&server, json!([["name", "in", ["beta", "nobody"]]])).await,
        pick(&w, &[1])
    );
    assert_eq!(
        find(&server, json!([["name", "starts_with", "alpha"]])).await,
        pick(&w, &[0, 3])
    );
    assert_eq!(
        find(&server, json!([["name", "ends_with", "bet"]])).await,
        pick(&w, &[3])
    );
    assert_eq!(
        find(&server, json!([["name", "contains", "amm"]])).await,
        pick(&w, &[2])
    );
    assert_eq!(
        find(&server, json!([["url", "contains", "h3.example"]])).await,
        pick(&w, &[3])
    );
    // A url compared whole is compared in the spelling kept, whatever spelling is searched.
    assert_eq!(
        find(
            &server,
            json!([["url", "exactly", "HTTPS://H3.Example.com:443/x/../in"]])
        )
        .await,
        pick(&w, &[3])
    );
    assert_eq!(
        find(
            &server,
            json!([[
                "url",
                "in",
                ["https://h1.example.com/in", "HTTPS://H2.EXAMPLE.COM/in"]
            ]])
        )
        .await,
        pick(&w, &[1, 2])
    );
}

#[tokio::test]
async fn criteria_are_anded_and_typed() {
    let server = Server::start(&[]);
    let w = seed(&server).await;
    assert_eq!(find(&server, json!([])).await, w, "no criteria: all");
    assert_eq!(
        find(
            &server,
            json!([
                ["object", "exactly", "contact"],
                ["batch_size", "greater_than", 10]
            ])
        )
        .await,
        pick(&w, &[1, 4])
    );
    assert_eq!(
        find(
            &server,
            json!([
                ["object", "exactly", "contact"],
                ["object", "exactly", "list"]
            ])
        )
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        find(&server, json!([["is_active", "exactly", false]])).await,
        pick(&w, &[1])
    );
    assert_eq!(
        find(&server, json!([["is_active", "exactly", true]])).await,
        pick(&w, &[0, 2, 3, 4])
    );
    assert_eq!(
        find(&server, json!([["is_active", "not", true]])).await,
        pick(&w, &[1])
    );
    // PHP clients send numbers as strings.
    assert_eq!(
        find(&server, json!([["list_id", "exactly", "2"]])).await,
        pick(&w, &[1])
    );
    assert_eq!(
        find(&server, json!([["id", "exactly", w[2]]])).await,
        pick(&w, &[2])
    );
    // null: never succeeded yet.
    assert_eq!(
        find(&server, json!([["last_success_time", "exactly", null]])).await,
        w
    );
    assert_eq!(
        find(&server, json!([["last_success_time", "not", null]])).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        find(&server, json!([["circuit_state", "exactly", "closed"]])).await,
        w
    );
    assert_eq!(
        find(
            &server,
            json!([["creation_time", "greater_than", 1_000_000_000]])
        )
        .await,
        w
    );
    // Every scalar field of the Webhook is searchable.
    for field in [
        "id",
        "name",
        "description",
        "object",
        "event",
        "list_id",
        "url",
        "is_active",
        "batch_size",
        "circuit_state",
        "consecutive_failures",
        "last_success_time",
        "creation_time",
        "last_modified_time",
    ] {
        let reply = server
            .rpc(
                "searchWebhooks",
                json!([server.key, [[field, "not", null]]]),
            )
            .await;
        assert!(reply.get("error").is_none(), "{field}: {reply}");
    }
}

#[tokio::test]
async fn pattern_operators_match_literally() {
    let server = Server::start(&[]);
    let w = seed(&server).await;
    // % and _ are characters to match, not wildcards.
    assert_eq!(
        find(&server, json!([["name", "contains", "%"]])).await,
        pick(&w, &[4])
    );
    assert_eq!(
        find(&server, json!([["name", "contains", "_"]])).await,
        pick(&w, &[4])
    );
    assert_eq!(
        find(&server, json!([["name", "starts_with", "100%"]])).await,
        pick(&w, &[4])
    );
    assert_eq!(
        find(&server, json!([["name", "starts_with", "_"]])).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        find(&server, json!([["name", "ends_with", "%"]])).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        find(&server, json!([["name", "contains", "\\"]])).await,
        Vec::<i64>::new()
    );
    // On an integer field the pattern applies to its decimal text.
    assert_eq!(
        find(&server, json!([["batch_size", "starts_with", "4"]])).await,
        pick(&w, &[3])
    );
}

#[tokio::test]
async fn limit_offset_and_sort() {
    let server = Server::start(&[]);
    let w = seed(&server).await;
    let search = |extra: Value| {
        let mut params = json!([server.key, []]);
        params
            .as_array_mut()
            .unwrap()
            .extend(extra.as_array().unwrap().iter().cloned());
        let server = &server;
        async move { ids_of(&server.ok("searchWebhooks", params).await) }
    };
    assert_eq!(search(json!([2])).await, pick(&w, &[0, 1]));
    assert_eq!(search(json!([2, 2])).await, pick(&w, &[2, 3]));
    assert_eq!(search(json!([2, 4])).await, pick(&w, &[4]));
    assert_eq!(search(json!([2, 10])).await, Vec::<i64>::new());
    assert_eq!(search(json!([0])).await, w, "limit 0 means all");
    assert_eq!(search(json!([0, 3])).await, pick(&w, &[3, 4]));
    assert_eq!(search(json!([1000, 0])).await, w);

    // With sort_by the default order is DESC…
    assert_eq!(
        search(json!([0, 0, "batch_size"])).await,
        pick(&w, &[4, 3, 2, 1, 0])
    );
    assert_eq!(
        search(json!([0, 0, "batch_size", "ASC"])).await,
        pick(&w, &[0, 1, 2, 3, 4])
    );
    assert_eq!(
        search(json!([0, 0, "batch_size", "asc"])).await,
        pick(&w, &[0, 1, 2, 3, 4])
    );
    assert_eq!(
        search(json!([0, 0, "batch_size", "DESC"])).await,
        pick(&w, &[4, 3, 2, 1, 0])
    );
    assert_eq!(
        search(json!([0, 0, "name", "ASC"])).await,
        pick(&w, &[4, 0, 3, 1, 2]),
        "100% real_deal, alpha, alphabet, beta, gamma"
    );
    assert_eq!(
        search(json!([2, 1, "name", "DESC"])).await,
        pick(&w, &[1, 3])
    );
    // …and without it the order is by id ascending, whatever sort_order says.
    assert_eq!(search(json!([0, 0, null, "DESC"])).await, w);
    assert_eq!(search(json!([0, 0])).await, w);

    // Ties keep a stable order by id in the same direction.
    let by_object = search(json!([0, 0, "object", "ASC"])).await;
    assert_eq!(by_object, pick(&w, &[0, 1, 4, 2, 3]));
    let by_object = search(json!([0, 0, "object"])).await;
    assert_eq!(by_object, pick(&w, &[3, 2, 4, 1, 0]));

    // Paging with criteria and sort together, by name.
    let page = server
        .ok(
            "searchWebhooks",
            json!({"api_key": server.key, "search_criteria": [["is_active", "exactly", true]],
                   "limit": 2, "offset": 1, "sort_by": "list_id", "sort_order": "DESC"}),
        )
        .await;
    assert_eq!(ids_of(&page), pick(&w, &[3, 2]));
}

#[tokio::test]
async fn malformed_criteria_are_311() {
    let server = Server::start(&[]);
    seed(&server).await;
    for criteria in [
        json!("name=beta"),
        json!({"name": "beta"}),
        json!(5),
        json!(["name", "exactly", "beta"]),
        json!([["name", "exactly"]]),
        json!([["name"]]),
        json!([[]]),
        json!([["name", "exactly", "beta", "extra"]]),
        json!([[1, "exactly", "beta"]]),
        json!([["name", 1, "beta"]]),
        json!([{"field": "name", "operator": "exactly", "value": "beta"}]),
        json!([["name", "exactly", "beta"], "oops"]),
        // Unknown fields, including ones that are not scalar or not shown.
        json!([["nope", "exactly", 1]]),
        json!([["metadata", "exactly", "{}"]]),
        json!([["headers", "contains", "x"]]),
        json!([["auth", "exactly", null]]),
        json!([["account_id", "exactly", 1]]),
        json!([["deleted_time", "exactly", null]]),
        json!([["NAME", "exactly", "beta"]]),
        // Unknown operators.
        json!([["name", "like", "b%"]]),
        json!([["name", "EXACTLY", "beta"]]),
        json!([["name", "=", "beta"]]),
        json!([["name", "", "beta"]]),
        // Values of the wrong shape for the field or operator.
        json!([["batch_size", "greater_than", "abc"]]),
        json!([["batch_size", "greater_than", null]]),
        json!([["list_id", "in", []]]),
        json!([["list_id", "in", 5]]),
        json!([["list_id", "in", "1,x"]]),
        json!([["name", "exactly", ["beta"]]]),
        json!([["name", "contains", {"a": 1}]]),
        json!([["is_active", "exactly", "maybe"]]),
    ] {
        for method in ["searchWebhooks", "countWebhooks"] {
            let reply = server.rpc(method, json!([server.key, criteria])).await;
            assert_eq!(reply["error"]["code"], 311, "{method} {criteria}: {reply}");
            assert_eq!(reply["error"]["message"], "Invalid Search Parameter Format");
            assert!(
                reply["error"]["data"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "data says what is wrong: {reply}"
            );
        }
    }
    // An unknown sort field too.
    let (code, _) = server
        .err("searchWebhooks", json!([server.key, [], 0, 0, "nope"]))
        .await;
    assert_eq!(code, 311);
}

#[tokio::test]
async fn values_never_become_sql() {
    let server = Server::start(&[]);
    let w = seed(&server).await;
    let nothing: Vec<i64> = Vec::new();
    for value in [
        "' OR 1=1 --",
        "' OR '1'='1",
        "\" OR \"\"=\"",
        "beta' --",
        "x'); DROP TABLE webhooks; --",
    ] {
        for op in [
            "exactly",
            "starts_with",
            "ends_with",
            "contains",
            "in",
            "greater_than",
        ] {
            let criteria = json!([["name", op, value]]);
            let found = find(&server, criteria).await;
            if op == "greater_than" {
                // A plain string comparison: the names after it, nothing more.
                assert!(found.len() <= w.len());
            } else {
                assert_eq!(found, nothing, "{op} {value:?}");
            }
        }
        let found = find(&server, json!([["name", "not", value]])).await;
        assert_eq!(found, w, "not {value:?}: every webhook and no more");
    }
    let reply = server
        .rpc(
            "searchWebhooks",
            json!([server.key, [["list_id", "in", "1) OR (1=1"]]]),
        )
        .await;
    assert_eq!(reply["error"]["code"], 311);
    let (code, _) = server
        .err(
            "searchWebhooks",
            json!([server.key, [], 0, 0, "id; DROP TABLE webhooks"]),
        )
        .await;
    assert_eq!(code, 311);
    let (code, _) = server
        .err(
            "searchWebhooks",
            json!([server.key, [], 0, 0, "id", "ASC; --"]),
        )
        .await;
    assert_eq!(code, 310);
    let (code, _) = server
        .err(
            "searchWebhooks",
            json!([server.key, [["name OR 1=1 --", "exactly", "x"]]]),
        )
        .await;
    assert_eq!(code, 311);

    // A webhook really named like an injection is found exactly, and alone.
    let evil = server
        .ok(
            "addWebhook",
            json!([server.key, {"object": "list", "event": "updated", "url": "https://evil.example.com/",
                                 "name": "' OR 1=1 --"}]),
        )
        .await;
    assert_eq!(
        find(&server, json!([["name", "exactly", "' OR 1=1 --"]])).await,
        vec![evil.as_i64().unwrap()]
    );
    assert_eq!(server.ok("countWebhooks", json!([server.key])).await, 6);
}

#[tokio::test]
async fn search_never_crosses_accounts() {
    let server = Server::start(&[]);
    let other = server.add_key("other", "full");
    seed(&server).await;
    let theirs = server
        .ok(
            "addWebhook",
            json!([other, webhook("https://other.example.com/")]),
        )
        .await;
    for criteria in [
        json!([]),
        json!([["id", "greater_than", 0]]),
        json!([["name", "not", "x"]]),
        json!([["name", "not", "x' OR account_id != 0 --"]]),
    ] {
        let found = server.ok("searchWebhooks", json!([other, criteria])).await;
        assert_eq!(ids_of(&found), vec![theirs.as_i64().unwrap()], "{criteria}");
        assert_eq!(
            server.ok("countWebhooks", json!([other, criteria])).await,
            1
        );
    }
}

#[tokio::test]
async fn events_are_searched_the_same_way() {
    let server = Server::start(&[]);
    let ids = server
        .ok(
            "addEvents",
            json!([server.key, [
                {"object": "contact", "event": "subscribed", "list_id": 1, "contact_id": 10},
                {"object": "contact", "event": "unsubscribed", "list_id": 2, "contact_id": 20},
                {"object": "list", "event": "created", "list_id": 3},
            ]]),
        )
        .await;
    let ids = common::ids(&ids);
    let found = server
        .ok(
            "searchEvents",
            json!([server.key, [["contact_id", "in", "10,20"]]]),
        )
        .await;
    assert_eq!(ids_of(&found), ids[..2]);
    let found = server
        .ok(
            "searchEvents",
            json!([server.key, [["contact_id", "exactly", null]]]),
        )
        .await;
    assert_eq!(ids_of(&found), ids[2..]);
    let found = server
        .ok("searchEvents", json!([server.key, [], 0, 0, "list_id"]))
        .await;
    assert_eq!(ids_of(&found), [ids[2], ids[1], ids[0]]);
    assert_eq!(
        server
            .ok(
                "countEvents",
                json!([server.key, [["event", "ends_with", "subscribed"]]])
            )
            .await,
        2
    );
    let (code, _) = server
        .err(
            "searchEvents",
            json!([server.key, [["url", "exactly", "x"]]]),
        )
        .await;
    assert_eq!(code, 311);
}
