//! Two dialects, one server. jsonrpsee speaks strict JSON-RPC 2.0; Vision6 clients send
//! requests without a `jsonrpc` member and expect `{"id","result","error"}` back. This module
//! rewrites a request body into 2.0 before jsonrpsee sees it, and the reply back into the
//! caller's dialect afterwards. It also gives every request a plain numeric id, so that
//! notifications (and odd ids jsonrpsee would treat as notifications) still run, and their
//! replies are dropped here, as JSON-RPC 2.0 requires.
//!
//! Ids are kept as the JSON text the client sent and spliced back into the reply as they are:
//! jsonrpsee echoes only integers up to `u64::MAX` and strings, and a trip through
//! `serde_json::Value` would turn `18446744073709551616` into `1.8446744073709552e19`, `-0`
//! into `-0.0`, and refuse `1e400` or a lone surrogate `"\ud800"` outright. Members are held
//! as `RawValue`s for the same reason, and because reading one as text has no nesting limit.

use crate::error::{INTERNAL, METHOD_NOT_FOUND_V1};
use jsonrpsee::types::TwoPointZero;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::fmt;

/// JSON-RPC 2.0's "Parse error" and "Invalid Request".
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    V2,
    /// Vision6 / JSON-RPC 1.0 style: no `jsonrpc` member, or `"jsonrpc":"1.0"` (what 1.0
    /// clients such as jayson in 1.0 mode may send). JSON-RPC 1.1's `"version":"1.1"` has no
    /// `jsonrpc` member, so it is this dialect too.
    V1,
}

#[derive(Debug)]
struct Entry {
    flavor: Flavor,
    /// The id as the client wrote it; `None` for a 2.0 notification (no reply).
    id: Option<Box<RawValue>>,
}

/// How to turn jsonrpsee's reply back into what the client expects.
#[derive(Debug)]
pub struct Plan {
    batch: bool,
    /// Indexed by the numeric id given to each request.
    entries: Vec<Entry>,
    /// The dialect of a reply jsonrpsee makes about the body as a whole (batch too big).
    flavor: Flavor,
}

/// What to do with a request body.
#[derive(Debug)]
pub enum Prepared {
    /// A plain 2.0 call that jsonrpsee takes as a call and whose id it echoes byte for byte:
    /// nothing to rewrite either way.
    PassThrough,
    Rewritten(Vec<u8>, Plan),
    /// No request at all, answered here with HTTP 200 like every reply: in the Vision6
    /// dialect (code 100) when it has no sign of `jsonrpc` or is neither an object nor an
    /// array (jsonrpsee would answer those with HTTP 400); in 2.0 form (-32700) otherwise.
    ParseError(Vec<u8>),
}

pub fn prepare(body: &[u8]) -> Prepared {
    if is_plain_v2_request(body) {
        return Prepared::PassThrough;
    }
    let object_or_array = matches!(body.trim_ascii_start().first(), Some(b'{' | b'['));
    let shows_jsonrpc = shows_v2(body);
    let parse_error = |detail: &str| {
        Prepared::ParseError(if object_or_array && shows_jsonrpc {
            v2_parse_error()
        } else {
            v1_parse_error(detail)
        })
    };
    // Read as text only: no number or string is decoded, and nesting has no limit.
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => return parse_error(&e.to_string()),
    };
    let whole: &RawValue = match serde_json::from_str(text) {
        Ok(whole) => whole,
        Err(e) => return parse_error(&e.to_string()),
    };
    let batch = whole.get().starts_with('[');
    let items: Vec<&RawValue> = if batch {
        match serde_json::from_str(whole.get()) {
            Ok(items) => items,
            Err(e) => return parse_error(&e.to_string()),
        }
    } else if whole.get().starts_with('{') {
        vec![whole]
    } else {
        return Prepared::ParseError(v1_parse_error(
            "a request is a JSON object, or an array of them",
        ));
    };
    if items.is_empty() {
        return Prepared::PassThrough; // jsonrpsee's -32600
    }
    // What an entry that is no object at all is answered in.
    let flavor = if shows_jsonrpc {
        Flavor::V2
    } else {
        Flavor::V1
    };
    let mut out = Vec::with_capacity(body.len() + 32 * items.len());
    let mut entries = Vec::with_capacity(items.len());
    if batch {
        out.push(b'[');
    }
    for item in items {
        if !entries.is_empty() {
            out.push(b',');
        }
        match normalise(item, entries.len(), flavor, &mut out) {
            Ok(entry) => entries.push(entry),
            Err(e) => return parse_error(&e.to_string()),
        }
    }
    if batch {
        out.push(b']');
    }
    Prepared::Rewritten(
        out,
        Plan {
            batch,
            entries,
            flavor,
        },
    )
}

/// The common case, told in one pass that reads nothing but text: one 2.0 call that jsonrpsee
/// will take as a call (the members its `Request` needs, of the types it needs, none twice)
/// and whose id it writes back exactly as sent: digits that fit a `u64`, `null`, or a string
/// without escapes. Anything else takes the full path, so jsonrpsee never mistakes a call for
/// a notification (it answers those with `null`).
fn is_plain_v2_request(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)] // read only to check their types
    struct Probe<'a> {
        jsonrpc: TwoPointZero,
        #[serde(borrow)]
        id: &'a RawValue,
        #[serde(borrow)]
        method: Cow<'a, str>,
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    // Skipped strings are not checked for UTF-8: check the whole body first.
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let Ok(probe) = serde_json::from_str::<Probe>(text) else {
        return false;
    };
    let id = probe.id.get();
    match id.as_bytes().first() {
        Some(b'"') => !id.contains('\\'),
        Some(b'0'..=b'9') => id.bytes().all(|b| b.is_ascii_digit()) && id.parse::<u64>().is_ok(),
        _ => id == "null",
    }
}

/// One JSON object as its members in the order sent, each value as the client's JSON text.
/// Duplicate names are kept, so that a second `id` can be told apart from the first.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'a> Members<'a> {
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    members.push((name, map.next_value::<&RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// Writes request `n` to `out` as a 2.0 call with id `n`; returns what its reply needs.
fn normalise(
    item: &RawValue,
    n: usize,
    fallback: Flavor,
    out: &mut Vec<u8>,
) -> serde_json::Result<Entry> {
    // Not an object, or a member name that is no text (a lone surrogate): no request.
    let Ok(members) = serde_json::from_str::<Members>(item.get()) else {
        return Ok(refuse(n, fallback, out));
    };
    let flavor = match members.get("jsonrpc") {
        Some(version) if !is_v1_version(version) => Flavor::V2,
        _ => Flavor::V1,
    };
    let mut ids = members.0.iter().filter(|(k, _)| k == "id").map(|(_, v)| *v);
    let id = match (ids.next(), ids.next()) {
        // Two ids: no telling which one the client would look for.
        (Some(_), Some(_)) => return Ok(refuse(n, flavor, out)),
        (Some(id), None) if flavor == Flavor::V2 && !v2_id_allowed(id) => {
            return Ok(refuse(n, flavor, out))
        }
        (Some(id), _) => Some(id.to_owned()),
        (None, _) if flavor == Flavor::V2 => None,
        (None, _) => Some(RawValue::NULL.to_owned()),
    };
    out.extend_from_slice(format!("{{\"id\":{n}").as_bytes());
    if flavor == Flavor::V1 {
        out.extend_from_slice(br#","jsonrpc":"2.0""#);
    }
    // A 1.0 client's own `"jsonrpc":"1.0"` gives way to the 2.0 jsonrpsee is sent.
    let dropped = |name: &str| name == "id" || (flavor == Flavor::V1 && name == "jsonrpc");
    for (name, value) in members.0.iter().filter(|(k, _)| !dropped(k)) {
        out.push(b',');
        serde_json::to_writer(&mut *out, name)?;
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
    Ok(Entry { flavor, id })
}

/// `"jsonrpc":"1.0"`: a JSON-RPC 1.0 client naming its version, answered in the Vision6
/// dialect. Any other value is a (perhaps broken) 2.0 request, held to 2.0's rules.
fn is_v1_version(version: &RawValue) -> bool {
    serde_json::from_str::<&str>(version.get()).is_ok_and(|v| v == "1.0")
}

/// JSON-RPC 2.0 allows a string, a number or null as an id; 1.0 allows anything.
fn v2_id_allowed(id: &RawValue) -> bool {
    matches!(
        id.get().as_bytes().first(),
        Some(b'"' | b'-' | b'0'..=b'9' | b'n')
    )
}

/// An entry that is no valid request: jsonrpsee is sent one it answers with -32600 (a call
/// without a method), and the reply goes back with id null.
fn refuse(n: usize, flavor: Flavor, out: &mut Vec<u8>) -> Entry {
    out.extend_from_slice(format!("{{\"jsonrpc\":\"2.0\",\"id\":{n}}}").as_bytes());
    Entry {
        flavor,
        id: Some(RawValue::NULL.to_owned()),
    }
}

/// Turns jsonrpsee's reply into the client's dialect; `None` when nothing is to be sent back
/// (only notifications).
pub fn finish(reply: &[u8], plan: &Plan) -> Option<Vec<u8>> {
    let Some(items) = read_replies(reply) else {
        // jsonrpsee answered `null` (what it says to a notification) or something that is no
        // reply at all: every request that expects an answer is still told something.
        return join(
            plan.entries
                .iter()
                .filter_map(|entry| {
                    let error = json!({"code": INVALID_REQUEST, "message": "Invalid request"});
                    Some(write_reply(
                        entry.flavor,
                        entry.id.as_deref()?,
                        None,
                        Some(error),
                    ))
                })
                .collect(),
            plan.batch,
        );
    };
    join(
        items
            .iter()
            .filter_map(|item| restore(item, plan))
            .collect(),
        plan.batch,
    )
}

fn read_replies(reply: &[u8]) -> Option<Vec<Members<'_>>> {
    let text = std::str::from_utf8(reply).ok()?.trim_start();
    if text.starts_with('[') {
        serde_json::from_str(text).ok()
    } else {
        Some(vec![serde_json::from_str(text).ok()?])
    }
}

/// The replies as one body: an array for a batch, else the one reply.
fn join(replies: Vec<Vec<u8>>, batch: bool) -> Option<Vec<u8>> {
    if replies.is_empty() {
        return None;
    }
    if !batch {
        return replies.into_iter().next();
    }
    let mut out = Vec::with_capacity(replies.iter().map(|r| r.len() + 1).sum::<usize>() + 1);
    out.push(b'[');
    for (i, reply) in replies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(reply);
    }
    out.push(b']');
    Some(out)
}

fn restore(reply: &Members, plan: &Plan) -> Option<Vec<u8>> {
    let error = reply
        .get("error")
        .and_then(|e| serde_json::from_str::<Value>(e.get()).ok());
    let entry = reply
        .get("id")
        .and_then(|id| id.get().parse::<usize>().ok())
        .and_then(|n| plan.entries.get(n));
    let (flavor, id, error) = match entry {
        // A reply jsonrpsee made itself (batch too big: id null).
        None => (plan.flavor, RawValue::NULL, error.map(standard_code)),
        Some(Entry {
            flavor,
            id: Some(id),
        }) => (*flavor, &**id, error),
        // Without an id it was meant as a notification, which gets no reply; but something
        // that is no valid request at all (no method, say) is told so, with id null.
        Some(Entry { flavor, id: None })
            if error.as_ref().is_some_and(|e| e["code"] == INVALID_REQUEST) =>
        {
            (*flavor, RawValue::NULL, error)
        }
        Some(_) => return None,
    };
    Some(write_reply(flavor, id, reply.get("result"), error))
}

/// One reply in the client's dialect, its id written exactly as the client sent it.
fn write_reply(
    flavor: Flavor,
    id: &RawValue,
    result: Option<&RawValue>,
    error: Option<Value>,
) -> Vec<u8> {
    let result = result.map_or("null", RawValue::get);
    match (flavor, error) {
        (Flavor::V2, Some(error)) => {
            format!(r#"{{"jsonrpc":"2.0","id":{},"error":{error}}}"#, id.get())
        }
        (Flavor::V2, None) => format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.get()),
        (Flavor::V1, Some(error)) => format!(
            r#"{{"id":{},"result":null,"error":{}}}"#,
            id.get(),
            v1_error(error)
        ),
        (Flavor::V1, None) => format!(r#"{{"id":{},"result":{result},"error":null}}"#, id.get()),
    }
    .into_bytes()
}

/// jsonrpsee answers a batch past the limit with a code of its own; the contract promises
/// only JSON-RPC 2.0's codes, so it becomes -32600 with jsonrpsee's words kept in `data`.
fn standard_code(mut error: Value) -> Value {
    const JSONRPSEE_BATCH_TOO_BIG: i64 = -32010;
    if error["code"] == JSONRPSEE_BATCH_TOO_BIG {
        let words = error["message"].take();
        error = json!({"code": INVALID_REQUEST, "message": "Invalid request", "data": words});
    }
    error
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

/// Whether a body, read as text only (it may not parse), shows a `jsonrpc` member other than
/// `"jsonrpc":"1.0"`: what decides the dialect of a reply about the body as a whole (a parse
/// error, a batch past the limit, a batch entry that is no object).
fn shows_v2(body: &[u8]) -> bool {
    const NAME: &[u8] = b"\"jsonrpc\"";
    let mut rest = body;
    while let Some(at) = rest.windows(NAME.len()).position(|w| w == NAME) {
        rest = &rest[at + NAME.len()..];
        let after_colon = rest
            .trim_ascii_start()
            .strip_prefix(b":")
            .map(<[u8]>::trim_ascii_start);
        if !after_colon.is_some_and(|value| value.starts_with(b"\"1.0\"")) {
            return true;
        }
    }
    false
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
        for body in [
            r#"{"jsonrpc":"2.0","id":7,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"m","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#,
        ] {
            assert!(
                matches!(prepare(body.as_bytes()), Prepared::PassThrough),
                "{body}"
            );
        }
    }

    #[test]
    fn ids_jsonrpsee_would_not_echo_faithfully_are_rewritten() {
        for body in [
            r#"{"jsonrpc":"2.0","id":-1,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1.0,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1e3,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":-0,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":"\u0041","method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
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

    fn text(bytes: Option<Vec<u8>>) -> String {
        String::from_utf8(bytes.expect("a reply")).unwrap()
    }

    #[test]
    fn ids_come_back_as_the_text_sent_in_either_dialect() {
        for id in [
            "1e400",
            "-0",
            "1.50",
            "18446744073709551616",
            r#""\ud800""#,
            r#""a\"b""#,
        ] {
            let (req, plan) = rewrite(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"m"}}"#));
            assert_eq!(req, json!({"jsonrpc": "2.0", "id": 0, "method": "m"}));
            let reply = finish(br#"{"jsonrpc":"2.0","id":0,"result":1}"#, &plan);
            assert_eq!(
                text(reply),
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":1}}"#)
            );
            let (_, plan) = rewrite(&format!(r#"{{"id":{id},"method":"m"}}"#));
            let reply = finish(br#"{"jsonrpc":"2.0","id":0,"result":1}"#, &plan);
            assert_eq!(
                text(reply),
                format!(r#"{{"id":{id},"result":1,"error":null}}"#)
            );
        }
    }

    #[test]
    fn ids_2_0_forbids_are_invalid_requests_with_id_null() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for id in ["{}", r#"{"a":1}"#, "[1]", "true", "false", &deep] {
            let (req, plan) = rewrite(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"m"}}"#));
            // No method: jsonrpsee answers -32600 without running anything.
            assert_eq!(req, json!({"jsonrpc": "2.0", "id": 0}));
            let reply = finish(
                br#"{"jsonrpc":"2.0","id":0,"error":{"code":-32600,"message":"Invalid request"}}"#,
                &plan,
            );
            assert_eq!(
                text(reply),
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request"}}"#
            );
            // Vision6 (JSON-RPC 1.0) allows any id.
            let (_, plan) = rewrite(&format!(r#"{{"id":{id},"method":"m"}}"#));
            let reply = finish(br#"{"jsonrpc":"2.0","id":0,"result":1}"#, &plan);
            assert_eq!(
                text(reply),
                format!(r#"{{"id":{id},"result":1,"error":null}}"#)
            );
        }
        // Two ids, in either dialect: no telling which one to answer with.
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#,
            r#"{"id":1,"method":"m","id":2}"#,
        ] {
            let (req, _) = rewrite(body);
            assert_eq!(req, json!({"jsonrpc": "2.0", "id": 0}), "{body}");
        }
    }

    #[test]
    fn a_reply_jsonrpsee_should_never_give_still_becomes_an_error() {
        let (_, plan) = rewrite(
            r#"[{"jsonrpc":"2.0","id":1e400,"method":"m"},{"id":-0,"method":"m"},{"jsonrpc":"2.0","method":"m"}]"#,
        );
        for reply in [&b"null"[..], b"", b"{", b"5"] {
            assert_eq!(
                text(finish(reply, &plan)),
                concat!(
                    r#"[{"jsonrpc":"2.0","id":1e400,"error":{"code":-32600,"message":"Invalid request"}},"#,
                    r#"{"id":-0,"result":null,"error":{"code":-32600,"message":"Invalid request"}}]"#
                ),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn vision6_replies_never_carry_jsonrpc() {
        // An entry that is no object, in a batch without `jsonrpc`; a batch past the limit.
        let (_, plan) = rewrite(r#"[1,{"id":2,"method":"m"}]"#);
        let reply = finish(
            br#"[{"jsonrpc":"2.0","id":0,"error":{"code":-32600,"message":"Invalid request"}},{"jsonrpc":"2.0","id":1,"result":5}]"#,
            &plan,
        );
        assert_eq!(
            text(reply),
            r#"[{"id":null,"result":null,"error":{"code":-32600,"message":"Invalid request"}},{"id":2,"result":5,"error":null}]"#
        );
        let reply = finish(
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32010,"message":"too big"}}"#,
            &plan,
        );
        assert_eq!(
            text(reply),
            r#"[{"id":null,"result":null,"error":{"code":-32600,"message":"Invalid request","data":"too big"}}]"#
        );
    }

    #[test]
    fn jsonrpc_1_0_and_version_1_1_are_the_vision6_dialect() {
        for body in [
            r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
            r#"{"id":1,"method":"m","jsonrpc" : "1.0"}"#,
            r#"{"version":"1.1","id":1,"method":"m"}"#,
        ] {
            let (req, plan) = rewrite(body);
            assert_eq!(req["jsonrpc"], "2.0", "{body}");
            let reply = finish(br#"{"jsonrpc":"2.0","id":0,"result":5}"#, &plan);
            assert_eq!(text(reply), r#"{"id":1,"result":5,"error":null}"#, "{body}");
        }
        // Anything else claims 2.0 and is held to it.
        let (req, plan) = rewrite(r#"{"jsonrpc":"3.0","id":-1,"method":"m"}"#);
        assert_eq!(req["jsonrpc"], "3.0");
        let reply = finish(
            br#"{"jsonrpc":"2.0","id":0,"error":{"code":-32600,"message":"Invalid request"}}"#,
            &plan,
        );
        assert!(text(reply).starts_with(r#"{"jsonrpc":"2.0","id":-1,"#));
        // What the body as a whole is answered in.
        assert!(!shows_v2(
            br#"[{"jsonrpc":"1.0","id":1},{"jsonrpc": "1.0"}]"#
        ));
        assert!(shows_v2(br#"[{"jsonrpc":"1.0","id":1},{"jsonrpc":"2.0"}]"#));
        assert!(shows_v2(br#"{"jsonrpc":2,"id":"#));
        match prepare(br#"{"jsonrpc":"1.0","id":1,"method":"#) {
            Prepared::ParseError(bytes) => {
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(v["error"]["code"], 100);
                assert!(v.get("jsonrpc").is_none());
            }
            other => panic!("{other:?}"),
        }
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
