//! Two dialects, one server. jsonrpsee speaks strict JSON-RPC 2.0; Vision6 clients send
//! requests without a `jsonrpc` member and expect `{"id","result","error"}` back. This module
//! rewrites a request body into 2.0 before jsonrpsee sees it, and the reply back into the
//! caller's dialect afterwards. It also gives every request a plain numeric id, so that
//! notifications (and odd ids jsonrpsee would treat as notifications) still run, and their
//! replies are dropped here, as JSON-RPC 2.0 requires.

use crate::error::{INTERNAL, METHOD_NOT_FOUND_V1};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// JSON-RPC 2.0's "Parse error" and "Invalid Request".
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    V2,
    /// Vision6 / JSON-RPC 1.0 style: no `jsonrpc` member.
    V1,
}

#[derive(Debug)]
struct Entry {
    flavor: Flavor,
    /// The id the client sent; `None` for a 2.0 notification (no reply).
    id: Option<Value>,
}

/// How to turn jsonrpsee's reply back into what the client expects.
#[derive(Debug)]
pub struct Plan {
    batch: bool,
    /// Indexed by the numeric id given to each request.
    entries: Vec<Entry>,
}

/// What to do with a request body.
#[derive(Debug)]
pub enum Prepared {
    /// A plain 2.0 request with an ordinary id: nothing to rewrite either way.
    PassThrough,
    Rewritten(Vec<u8>, Plan),
    /// No request at all, answered here with HTTP 200 like every reply: in the Vision6
    /// dialect (code 100) when it has no sign of `jsonrpc` or is neither an object nor an
    /// array (jsonrpsee would answer those with HTTP 400); in 2.0 form (-32700) when it shows
    /// `jsonrpc` but is not UTF-8 (jsonrpsee would call that -32600, an invalid request).
    ParseError(Vec<u8>),
}

pub fn prepare(body: &[u8]) -> Prepared {
    if is_plain_v2_request(body) {
        return Prepared::PassThrough;
    }
    let object_or_array = matches!(body.trim_ascii_start().first(), Some(b'{' | b'['));
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) if !object_or_array || !contains(body, b"\"jsonrpc\"") => {
            return Prepared::ParseError(v1_parse_error(&e.to_string()))
        }
        Err(_) if std::str::from_utf8(body).is_err() => {
            return Prepared::ParseError(v2_parse_error())
        }
        Err(_) => return Prepared::PassThrough,
    };
    let mut entries = Vec::new();
    let rewritten = match value {
        Value::Object(obj) => {
            if is_plain_v2(&obj) {
                return Prepared::PassThrough;
            }
            Value::Object(normalise(obj, &mut entries))
        }
        Value::Array(items) if !items.is_empty() => Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(obj) => Value::Object(normalise(obj, &mut entries)),
                    other => other,
                })
                .collect(),
        ),
        Value::Array(_) => return Prepared::PassThrough, // empty: jsonrpsee's -32600
        _ => {
            return Prepared::ParseError(v1_parse_error(
                "a request is a JSON object, or an array of them",
            ))
        }
    };
    let batch = rewritten.is_array();
    match serde_json::to_vec(&rewritten) {
        Ok(bytes) => Prepared::Rewritten(bytes, Plan { batch, entries }),
        Err(_) => Prepared::PassThrough,
    }
}

/// The common case, told without building the request as a tree: one object with `jsonrpc`
/// and a plain id (see [`is_plain_v2`]). Anything else, or anything odd, takes the full path.
fn is_plain_v2_request(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        jsonrpc: Option<serde::de::IgnoredAny>,
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    // Skipped strings are not checked for UTF-8: check the whole body first.
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    match serde_json::from_str::<Probe>(text) {
        Ok(Probe {
            jsonrpc: Some(_),
            id: Some(id),
        }) => id.get().starts_with('"') || id.get().parse::<u64>().is_ok(),
        _ => false,
    }
}

/// A 2.0 request whose id jsonrpsee echoes faithfully: a non-negative integer or a string.
fn is_plain_v2(obj: &Map<String, Value>) -> bool {
    obj.contains_key("jsonrpc")
        && obj
            .get("id")
            .is_some_and(|id| id.is_string() || id.is_u64())
}

fn normalise(mut obj: Map<String, Value>, entries: &mut Vec<Entry>) -> Map<String, Value> {
    let flavor = if obj.contains_key("jsonrpc") {
        Flavor::V2
    } else {
        Flavor::V1
    };
    let id = match (obj.remove("id"), flavor) {
        (None, Flavor::V2) => None,
        (None, Flavor::V1) => Some(Value::Null),
        (Some(id), _) => Some(id),
    };
    if flavor == Flavor::V1 {
        obj.insert("jsonrpc".into(), json!("2.0"));
    }
    obj.insert("id".into(), json!(entries.len()));
    entries.push(Entry { flavor, id });
    obj
}

/// Turns jsonrpsee's reply into the client's dialect; `None` when nothing is to be sent back
/// (only notifications).
pub fn finish(reply: &[u8], plan: &Plan) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(reply).ok()?;
    let restored = match value {
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .into_iter()
                .filter_map(|item| restore(item, plan))
                .collect();
            if kept.is_empty() {
                return None;
            }
            Value::Array(kept)
        }
        single => {
            let restored = restore(single, plan)?;
            if plan.batch {
                Value::Array(vec![restored])
            } else {
                restored
            }
        }
    };
    serde_json::to_vec(&restored).ok()
}

fn restore(mut reply: Value, plan: &Plan) -> Option<Value> {
    let entry = reply
        .get("id")
        .and_then(Value::as_u64)
        .and_then(|i| plan.entries.get(i as usize));
    let Some(entry) = entry else {
        // A reply jsonrpsee made itself (invalid request, batch too big: id null).
        return Some(standard_code(reply));
    };
    let id = match entry.id.clone() {
        Some(id) => id,
        // Without an id it was meant as a notification, which gets no reply; but something
        // that is no valid request at all (no method, say) is told so, with id null.
        None if reply["error"]["code"] == INVALID_REQUEST => Value::Null,
        None => return None,
    };
    match entry.flavor {
        Flavor::V2 => {
            reply["id"] = id;
            Some(reply)
        }
        Flavor::V1 => {
            let error = reply.get_mut("error").map(Value::take).map(v1_error);
            let result = reply.get_mut("result").map(Value::take);
            Some(
                json!({ "id": id, "result": result.unwrap_or(Value::Null), "error": error.unwrap_or(Value::Null) }),
            )
        }
    }
}

/// jsonrpsee answers a batch past the limit with a code of its own; the contract promises
/// only JSON-RPC 2.0's codes, so it becomes -32600 with jsonrpsee's words kept in `data`.
fn standard_code(mut reply: Value) -> Value {
    const JSONRPSEE_BATCH_TOO_BIG: i64 = -32010;
    if reply["error"]["code"] == JSONRPSEE_BATCH_TOO_BIG {
        let words = reply["error"]["message"].take();
        reply["error"] =
            json!({"code": INVALID_REQUEST, "message": "Invalid request", "data": words});
    }
    reply
}

/// Vision6 codes for the protocol errors that have one.
fn v1_error(mut error: Value) -> Value {
    match error.get("code").and_then(Value::as_i64) {
        Some(-32601) => {
            error["code"] = json!(METHOD_NOT_FOUND_V1);
            error["message"] = json!("Method Not Found");
        }
        Some(-32700) => {
            error["code"] = json!(INTERNAL);
            error["message"] = json!("Internal Server Error");
        }
        _ => {}
    }
    error
}

fn v1_parse_error(detail: &str) -> Vec<u8> {
    let reply = json!({
        "id": null,
        "result": null,
        "error": { "code": INTERNAL, "message": "Internal Server Error", "data": format!("parse error: {detail}") },
    });
    serde_json::to_vec(&reply).unwrap_or_default()
}

fn v2_parse_error() -> Vec<u8> {
    let reply = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": PARSE_ERROR, "message": "Parse error" },
    });
    serde_json::to_vec(&reply).unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(body: &str) -> (Value, Plan) {
        match prepare(body.as_bytes()) {
            Prepared::Rewritten(bytes, plan) => (serde_json::from_slice(&bytes).unwrap(), plan),
            other => panic!("expected a rewrite, got {other:?}"),
        }
    }

    #[test]
    fn plain_v2_passes_through() {
        assert!(matches!(
            prepare(br#"{"jsonrpc":"2.0","id":7,"method":"m"}"#),
            Prepared::PassThrough
        ));
        assert!(matches!(
            prepare(br#"{"jsonrpc":"2.0","id":"a","method":"m"}"#),
            Prepared::PassThrough
        ));
    }

    #[test]
    fn ids_jsonrpsee_would_not_echo_faithfully_are_rewritten() {
        for body in [
            r#"{"jsonrpc":"2.0","id":-1,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1.0,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1e3,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","id":-1}"#,
            r#"{"id":1,"method":"m"}"#,
        ] {
            assert!(
                matches!(prepare(body.as_bytes()), Prepared::Rewritten(..)),
                "{body}"
            );
        }
    }

    #[test]
    fn v1_request_becomes_v2_and_reply_goes_back() {
        let (req, plan) = rewrite(r#"{"id":"x1","method":"m","params":[]}"#);
        assert_eq!(req["jsonrpc"], "2.0");
        assert_eq!(req["id"], 0);
        let out = finish(br#"{"jsonrpc":"2.0","id":0,"result":5}"#, &plan).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"id":"x1","result":5,"error":null})
        );
        let out = finish(
            br#"{"jsonrpc":"2.0","id":0,"error":{"code":-32601,"message":"Method not found"}}"#,
            &plan,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["code"], 104);
        assert_eq!(v["result"], Value::Null);
    }

    #[test]
    fn notifications_run_but_get_no_reply() {
        let (req, plan) =
            rewrite(r#"[{"jsonrpc":"2.0","method":"m"},{"jsonrpc":"2.0","id":-1,"method":"m"}]"#);
        assert_eq!(req[0]["id"], 0);
        assert_eq!(req[1]["id"], 1);
        let out = finish(
            br#"[{"jsonrpc":"2.0","id":0,"result":1},{"jsonrpc":"2.0","id":1,"result":2}]"#,
            &plan,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!([{"jsonrpc":"2.0","id":-1,"result":2}])
        );
        let (_, plan) = rewrite(r#"{"jsonrpc":"2.0","method":"m"}"#);
        assert!(finish(br#"{"jsonrpc":"2.0","id":0,"result":1}"#, &plan).is_none());
    }

    #[test]
    fn garbage_without_jsonrpc_is_a_v1_parse_error() {
        match prepare(b"{not json") {
            Prepared::ParseError(bytes) => {
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(v["error"]["code"], 100);
            }
            other => panic!("{other:?}"),
        }
        for body in [&b"5"[..], b"null", b"\"m\"", b"x \"jsonrpc\""] {
            assert!(matches!(prepare(body), Prepared::ParseError(_)), "{body:?}");
        }
    }
}
