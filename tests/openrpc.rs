//! The OpenRPC document cannot drift from the server: same methods, same parameter names and
//! required flags, `rpc.discover` serves it verbatim, and every example replays against a live
//! server with a reply that matches the declared result schema.

mod common;
use common::*;
use hookrpc::api::METHODS;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn document() -> Value {
    serde_json::from_str(include_str!("../schema/openrpc.json")).expect("openrpc.json is JSON")
}

fn doc_methods(doc: &Value) -> &Vec<Value> {
    doc["methods"].as_array().expect("methods array")
}

#[test]
fn document_and_server_name_the_same_methods_and_params() {
    let doc = document();
    let documented: BTreeSet<&str> = doc_methods(&doc)
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let served: BTreeSet<&str> = METHODS.iter().map(|m| m.name).collect();
    assert_eq!(
        documented, served,
        "methods in schema/openrpc.json vs the server's method table"
    );
    for method in METHODS {
        let m = doc_methods(&doc)
            .iter()
            .find(|m| m["name"] == method.name)
            .unwrap();
        let params = m["params"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: params", method.name));
        let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(
            names, method.params,
            "{}: param names in order",
            method.name
        );
        for (i, p) in params.iter().enumerate() {
            let required = p["required"].as_bool().unwrap_or(false);
            assert_eq!(
                required,
                i < method.required,
                "{}: is {} required",
                method.name,
                names[i]
            );
        }
        assert!(
            m["result"]["schema"].is_object(),
            "{}: result schema",
            method.name
        );
        assert!(
            m["examples"].as_array().is_some_and(|e| !e.is_empty()),
            "{}: at least one example",
            method.name
        );
    }
}

#[tokio::test]
async fn rpc_discover_serves_the_document_verbatim() {
    let server = Server::start(&[]);
    let served = server.ok("rpc.discover", json!([])).await;
    assert_eq!(served, document());
    let (status, text) = server
        .post_raw("/", r#"{"id":1,"method":"rpc.discover"}"#)
        .await;
    assert_eq!(status, 200);
    let v1: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v1["result"], document());
    assert_eq!(server.ok("rpc.discover", json!({})).await, document());
}

#[tokio::test]
async fn rpc_discover_takes_no_params_and_names_those_given() {
    let server = Server::start(&[]);
    let (code, data) = server.err("rpc.discover", json!({"api_key": "x"})).await;
    assert_eq!(code, 310);
    assert!(data.to_string().contains("api_key"), "{data}");
    let (code, data) = server.err("rpc.discover", json!(["x", 1])).await;
    assert_eq!(code, 310);
    assert!(
        data.to_string()
            .contains("expected at most 0 parameters, got 2"),
        "{data}"
    );
}

fn substitute_key(v: &Value, key: &str) -> Value {
    match v {
        Value::String(s) if s == "$API_KEY" => json!(key),
        Value::Array(items) => Value::Array(items.iter().map(|i| substitute_key(i, key)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute_key(v, key)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `schema` may `$ref` the document's components: validate against a root that carries them.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({ "allOf": [schema], "components": doc["components"] });
    jsonschema::draft7::new(&root)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}: {schema}"))
}

#[tokio::test]
async fn every_example_replays_against_a_live_server() {
    let doc = document();
    let server = Server::start(&["--allow-private-targets"]);
    for m in doc_methods(&doc) {
        let name = m["name"].as_str().unwrap();
        let result_schema = validator(&doc, &m["result"]["schema"]);
        for example in m["examples"].as_array().unwrap() {
            let by_name: serde_json::Map<String, Value> = example["params"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_owned(),
                        substitute_key(&p["value"], &server.key),
                    )
                })
                .collect();
            let reply = server.rpc(name, Value::Object(by_name)).await;
            let expected = &example["result"]["value"];
            match (reply.get("result"), reply.get("error")) {
                (Some(result), None) => {
                    let problems: Vec<String> = result_schema
                        .iter_errors(result)
                        .map(|e| e.to_string())
                        .collect();
                    assert!(problems.is_empty(), "{name} example {:?}: reply {result} breaks the result schema: {problems:?}", example["name"]);
                    if expected.is_i64() || expected.is_boolean() {
                        assert_eq!(result, expected, "{name} example {:?}", example["name"]);
                    }
                }
                _ => panic!("{name} example {:?} failed: {reply}", example["name"]),
            }
        }
    }
}

/// Generators name a type after each schema's `title`, give each result the schema's `type`, and
/// make one enum member per spelling: `@open-rpc/generator`'s TypeScript output did not compile
/// without titles, mutations came out as `Promise<any>`, and `ASC`/`asc` broke its Rust output.
#[test]
fn document_is_fit_for_generators() {
    let doc = document();
    let mut problems = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let path = format!("components/schemas/{name}");
        if schema.get("title").and_then(Value::as_str).is_none() {
            problems.push(format!("{path}: no title"));
        }
        check_subschemas(schema, &path, &mut problems);
    }
    for m in doc_methods(&doc) {
        let name = m["name"].as_str().unwrap();
        let mut schemas: Vec<(String, &Value)> = m["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    format!("{name} param {}", p["name"].as_str().unwrap()),
                    &p["schema"],
                )
            })
            .collect();
        schemas.push((format!("{name} result"), &m["result"]["schema"]));
        for (path, schema) in schemas {
            if schema.get("$ref").is_none() && schema.get("title").and_then(Value::as_str).is_none()
            {
                problems.push(format!("{path}: no title"));
            }
            check_subschemas(schema, &path, &mut problems);
        }
        let result = resolve(&doc, &m["result"]["schema"]);
        if result.get("type").is_none() {
            problems.push(format!("{name} result: no type"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r} resolves")),
        None => schema,
    }
}

/// Every object schema inside has a title; no enum has two members that differ only in case.
fn check_subschemas(schema: &Value, path: &str, problems: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if map.get("type") == Some(&json!("object")) && !map.contains_key("title") {
                problems.push(format!("{path}: object schema without a title"));
            }
            if let Some(members) = map.get("enum").and_then(Value::as_array) {
                let mut seen = BTreeSet::new();
                for m in members.iter().filter_map(Value::as_str) {
                    if !seen.insert(m.to_lowercase()) {
                        problems.push(format!("{path}: enum spells {m:?} twice"));
                    }
                }
            }
            for (key, sub) in map {
                check_subschemas(sub, &format!("{path}/{key}"), problems);
            }
        }
        Value::Array(items) => {
            for (i, sub) in items.iter().enumerate() {
                check_subschemas(sub, &format!("{path}/{i}"), problems);
            }
        }
        _ => {}
    }
}
