//! THE validator: raw JSON in, typed values out, and every problem collected at once (310).
//! The rules of API.md live here and nowhere else, so a client always hears the same words
//! for the same mistake.
//!
//! It takes input the way PHP writes it, because PHP clients are the ones this API was made
//! for: `json_encode` writes an empty PHP array as `[]` (it cannot tell an empty list from an
//! empty map), integers read from a database arrive as strings of digits, and booleans stored
//! as TINYINT as 0/1 (or "0"/"1"). Anything else of the wrong type is still a 310.

use crate::catalog;
use crate::error::{ApiError, Problem};
use crate::model::{
    BasicAuth, Events, Header, JsonObject, NewEvent, WebhookPatch, WebhookSettings, EVERY_EVENT,
};
use base64::Engine;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The problem with a string holding U+0000, which no stored text may hold.
pub const NO_NUL: &str = "must not contain the NUL character (\\u0000)";

/// Header names a webhook may not set: we own them (framing, identity and signing).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
];
const MAX_URL: usize = 2048;
const MAX_HEADERS: usize = 99;
const MAX_METADATA_BYTES: usize = 4 * 1024;
const MAX_EVENT_DATA_BYTES: usize = 256 * 1024;
pub const MAX_EVENTS_PER_CALL: usize = 1000;
/// The most events one webhook may name.
const MAX_WEBHOOK_EVENTS: usize = 64;

/// What an empty PHP array (`[]`) reads as where an object is expected.
static EMPTY_OBJECT: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// An object, or PHP's `[]` for an empty one.
fn as_object(v: &Value) -> Option<&Map<String, Value>> {
    match v {
        Value::Object(map) => Some(map),
        Value::Array(items) if items.is_empty() => Some(&EMPTY_OBJECT),
        _ => None,
    }
}

/// An integer, or a string of decimal digits (PHP's database drivers hand out integers as
/// strings). No sign, space, point or exponent: "-1", " 5" and "1e3" are not PHP's output of
/// an integer, and telling what they meant would be a guess.
fn as_integer(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => v.as_i64(),
    }
}

/// A boolean, or 0/1 as a number or a string (a TINYINT column, as PHP reads it).
fn as_boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        },
        _ => None,
    }
}

/// The top-level params of a call, bound to the method's parameter names whether the client
/// sent them by position (Vision6) or by name (generated SDKs).
pub struct Args {
    names: &'static [&'static str],
    values: Vec<Option<Value>>,
    /// The params as the client wrote them, for what is kept exactly (see [`JsonObject`]).
    text: Option<String>,
}

impl Args {
    /// The param `name` as the client wrote it.
    pub fn raw(&self, name: &str) -> Option<&RawValue> {
        let index = self.names.iter().position(|n| *n == name)?;
        let text = self.text.as_deref()?;
        // One pass over the params: by position or by name, as their first character says.
        match text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('[')
        {
            true => serde_json::from_str::<Vec<&RawValue>>(text)
                .ok()?
                .get(index)
                .copied(),
            false => raw_member(Some(text), name),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        let index = self.names.iter().position(|n| *n == name)?;
        self.values[index].as_ref().filter(|v| !v.is_null())
    }

    pub fn take(&mut self, name: &str) -> Option<Value> {
        let index = self.names.iter().position(|n| *n == name)?;
        self.values[index].take().filter(|v| !v.is_null())
    }
}

/// Binds raw params to `names`; the first `required` names must be present. Problems (extra
/// positional params, missing ones) go to `check`. Params that are neither an array nor an
/// object bind nothing, not even the key: that is a 310 straight away. So is a name the method
/// does not have, before the key is looked at: a camelCase SDK sending `apiKey` must learn
/// that the name is wrong, not that its key is (300).
pub fn bind(
    raw: Option<Value>,
    text: Option<String>,
    names: &'static [&'static str],
    required: usize,
    check: &mut Checker,
) -> Result<Args, ApiError> {
    let mut values = vec![None; names.len()];
    let mut unknown_names = false;
    match raw {
        None => {}
        Some(Value::Array(items)) => {
            if items.len() > names.len() {
                check.problem(
                    "params",
                    format!(
                        "expected at most {} parameters, got {}",
                        names.len(),
                        items.len()
                    ),
                );
            }
            for (slot, item) in values.iter_mut().zip(items) {
                *slot = Some(item);
            }
        }
        Some(Value::Object(map)) => {
            for (key, value) in map {
                match names.iter().position(|n| *n == key) {
                    Some(index) => values[index] = Some(value),
                    None => {
                        check.problem(key.clone(), format!("Unknown argument {key}"));
                        unknown_names = true;
                    }
                }
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "params",
                "params must be an array or an object",
            ))
        }
    }
    // The key (always first) is otherwise checked by authentication, which answers 300; in a
    // 310 about unknown names, its absence is one of the problems (the likely misnamed one).
    let first = if unknown_names { 0 } else { 1 };
    for (name, value) in names.iter().zip(&values).take(required).skip(first) {
        if value.as_ref().is_none_or(Value::is_null) {
            check.problem(*name, format!("{name} is required"));
        }
    }
    if unknown_names {
        return Err(ApiError::InvalidParams(std::mem::take(&mut check.problems)));
    }
    Ok(Args {
        names,
        values,
        text,
    })
}

/// Collects problems while typed values are read. Values returned while a problem is pending
/// are placeholders: use them only after [`Checker::finish`] succeeded.
#[derive(Default)]
pub struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    pub fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(field, message));
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidParams(self.problems))
        }
    }

    /// An id parameter: a positive integer. A missing one was reported by [`bind`].
    pub fn id(&mut self, field: &str, value: Option<&Value>) -> i64 {
        match value {
            None => 0,
            Some(v) => self.int_in(field, v, 1, i64::MAX).unwrap_or(0),
        }
    }

    /// An optional integer parameter in `min..=max`.
    pub fn opt_int(
        &mut self,
        field: &str,
        value: Option<&Value>,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        value.and_then(|v| self.int_in(field, v, min, max))
    }

    fn int_in(&mut self, field: &str, v: &Value, min: i64, max: i64) -> Option<i64> {
        match as_integer(v) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) if max == i64::MAX => {
                self.problem(field, format!("must be an integer of at least {min}"));
                None
            }
            Some(_) => {
                self.problem(field, format!("must be an integer from {min} to {max}"));
                None
            }
            None => {
                self.problem(field, "must be an integer");
                None
            }
        }
    }

    fn string(&mut self, field: &str, v: &Value, min: usize, max: usize) -> Option<String> {
        let Some(s) = v.as_str() else {
            self.problem(field, "must be a string");
            return None;
        };
        if s.contains('\0') {
            // PostgreSQL's text cannot hold it, and both backends must take the same input.
            self.problem(field, NO_NUL);
            return None;
        }
        let len = s.chars().count();
        if len < min || len > max {
            let rule = if min == 0 {
                format!("must be at most {max} characters")
            } else {
                format!("must be {min} to {max} characters")
            };
            self.problem(field, rule);
            return None;
        }
        Some(s.to_owned())
    }

    /// A string that names something: what [`Checker::string`] takes, no control characters,
    /// and something visible (whitespace or zero-width characters alone would show as nothing
    /// wherever the name is listed).
    fn name(&mut self, field: &str, v: &Value, max: usize) -> Option<String> {
        let s = self.string(field, v, 1, max)?;
        if s.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
            self.problem(field, "must not be blank");
            return None;
        }
        if s.chars().any(char::is_control) {
            self.problem(field, "must not contain control characters");
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, field: &str, v: &Value) -> Option<bool> {
        let b = as_boolean(v);
        if b.is_none() {
            self.problem(field, "must be true or false");
        }
        b
    }

    /// An object kept as written (`raw`, when it is that object's text). Its size is counted
    /// as UTF-8 with only the escapes JSON requires, whatever escapes the client chose (PHP
    /// writes é as `\u00e9`, six bytes for two): the same object is the same size from any
    /// client.
    fn object(
        &mut self,
        field: &str,
        v: &Value,
        raw: Option<&RawValue>,
        max_bytes: usize,
    ) -> Option<JsonObject> {
        let Some(map) = as_object(v) else {
            self.problem(field, "must be an object");
            return None;
        };
        if serialized_len(map) > max_bytes {
            self.problem(
                field,
                format!("must be at most {max_bytes} bytes serialized"),
            );
            return None;
        }
        // PHP writes an empty object as `[]`: that one is kept as `{}`.
        Some(match raw {
            Some(raw) if raw.get().starts_with('{') => JsonObject::compact(raw),
            _ => JsonObject::of(map),
        })
    }

    /// `details` must be an object whose keys are all in `allowed`; unknown keys are named
    /// with `prefix` in front (their place inside an array or a nested object).
    fn details<'a>(
        &mut self,
        field: &str,
        prefix: &str,
        v: Option<&'a Value>,
        allowed: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        let map = match v.map(as_object) {
            None => return None, // reported by `bind`
            Some(Some(map)) => map,
            Some(None) => {
                self.problem(field, "must be an object");
                return None;
            }
        };
        for key in map.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.problem(format!("{prefix}{key}"), format!("Unknown argument {key}"));
        }
        Some(map)
    }

    /// `object`: one of the catalog's.
    fn catalog_object(&mut self, field: &str, v: &Value) -> Option<String> {
        let s = self.string(field, v, 1, 64)?;
        let catalog = catalog::active();
        if catalog.has_object(&s) {
            return Some(s);
        }
        let objects: Vec<_> = catalog.objects().collect();
        self.problem(field, format!("must be one of: {}", objects.join(", ")));
        None
    }

    /// Operational events (objects `webhook` and `delivery`) are published by hookrpc alone:
    /// a publisher cannot pass off its own events as hookrpc's.
    fn not_reserved(&mut self, field: &str, object: &str) -> bool {
        if !catalog::is_reserved(object) {
            return true;
        }
        self.problem(
            field,
            format!("object {object:?} is hookrpc's own: only hookrpc publishes its events"),
        );
        false
    }

    /// `object` and `event` of event_details, and whether the event applies to the object.
    fn object_event(
        &mut self,
        prefix: &str,
        map: &Map<String, Value>,
    ) -> (Option<String>, Option<String>) {
        let field = |name: &str| format!("{prefix}{name}");
        let object = map
            .get("object")
            .and_then(|v| self.catalog_object(&field("object"), v))
            .filter(|object| self.not_reserved(&field("object"), object));
        let event = map
            .get("event")
            .and_then(|v| self.string(&field("event"), v, 1, 64));
        for name in ["object", "event"] {
            if !map.contains_key(name) {
                self.problem(field(name), format!("{name} is required"));
            }
        }
        if let (Some(o), Some(e)) = (&object, &event) {
            self.event_applies(&field("event"), o, e);
        }
        (object, event)
    }

    /// `object` and `event` or `events` of webhook_details (`new`: required), and whether the
    /// events apply to the object. `events` is None when not given or not valid.
    fn object_events(
        &mut self,
        map: &Map<String, Value>,
        new: bool,
    ) -> (Option<String>, Option<Events>) {
        let object = map
            .get("object")
            .and_then(|v| self.catalog_object("object", v));
        if new && !map.contains_key("object") {
            self.problem("object", "object is required");
        }
        let before = self.problems.len();
        let named = self.event_names(map, new);
        if let Some(object) = &object {
            for (field, name) in named.iter().filter(|(_, n)| n != EVERY_EVENT) {
                self.event_applies(field, object, name);
            }
        }
        let valid = self.problems.len() == before && !named.is_empty();
        let events =
            valid.then(|| Events::from(named.into_iter().map(|(_, n)| n).collect::<Vec<_>>()));
        (object, events)
    }

    /// The names `event` or `events` give, each with the field it came from (none when neither
    /// is given, or when what is given is malformed). Whether they apply to the object is the
    /// caller's to check, since an edit may leave the object as it is.
    fn event_names(&mut self, map: &Map<String, Value>, new: bool) -> Vec<(String, String)> {
        match (map.get("event"), map.get("events")) {
            (Some(_), Some(_)) => {
                self.problem("events", "give either event or events, not both");
                Vec::new()
            }
            (Some(v), None) => match self.string("event", v, 1, 64) {
                Some(name) if name == EVERY_EVENT => {
                    self.problem("event", "to follow every event, give events: [\"*\"]");
                    Vec::new()
                }
                Some(name) => vec![("event".to_owned(), name)],
                None => Vec::new(),
            },
            (None, Some(v)) => self.event_list(v),
            (None, None) => {
                if new {
                    self.problem("event", "event or events is required");
                }
                Vec::new()
            }
        }
    }

    /// `events`: 1 to 64 distinct names, or `["*"]` alone. Each name given again is a problem
    /// of its own (and is kept once, so an unknown name is reported once).
    fn event_list(&mut self, v: &Value) -> Vec<(String, String)> {
        let Some(items) = v
            .as_array()
            .filter(|items| (1..=MAX_WEBHOOK_EVENTS).contains(&items.len()))
        else {
            self.problem(
                "events",
                format!("must be an array of 1 to {MAX_WEBHOOK_EVENTS} event names, or [\"*\"]"),
            );
            return Vec::new();
        };
        let mut named: Vec<(String, String)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("events[{i}]");
            let Some(name) = self.string(&field, item, 1, 64) else {
                continue;
            };
            if let Some((first, _)) = named.iter().find(|(_, n)| *n == name) {
                self.problem(
                    field,
                    format!("{name:?} is listed twice (first as {first})"),
                );
            } else if name == EVERY_EVENT && items.len() > 1 {
                self.problem(field, "\"*\" follows every event and must be the only item");
            } else {
                named.push((field, name));
            }
        }
        named
    }

    fn event_applies(&mut self, field: &str, object: &str, event: &str) -> bool {
        let valid = catalog::active().events(object).unwrap_or_default();
        let ok = valid.iter().any(|e| e == event);
        if !ok {
            self.problem(
                field,
                format!(
                    "event {event:?} is not valid for object {object:?}; valid: {}",
                    valid.join(", ")
                ),
            );
        }
        ok
    }

    /// `webhook_details` of addWebhook (`new`: object, event and url required) or editWebhook.
    pub fn webhook_details(
        &mut self,
        v: Option<&Value>,
        raw: Option<&RawValue>,
        new: bool,
    ) -> WebhookPatch {
        const KEYS: &[&str] = &[
            "object",
            "event",
            "events",
            "list_id",
            "url",
            "name",
            "description",
            "headers",
            "auth",
            "secret",
            "is_active",
            "batch_size",
            "metadata",
        ];
        let mut patch = WebhookPatch::default();
        let Some(map) = self.details("webhook_details", "", v, KEYS) else {
            return patch;
        };
        (patch.object, patch.events) = self.object_events(map, new);
        if new && !map.contains_key("url") {
            self.problem("url", "url is required");
        }
        for (key, v) in map {
            match key.as_str() {
                "list_id" => patch.list_id = self.int_in(key, v, 0, i64::MAX),
                "url" => patch.url = self.url(v),
                "name" => patch.name = self.name(key, v, 250),
                "description" => patch.description = self.string(key, v, 0, 1024),
                "headers" => patch.headers = self.headers(v),
                "auth" => patch.auth = self.auth(v),
                "secret" => patch.secret = self.secret(v),
                "is_active" => patch.is_active = self.boolean(key, v),
                "batch_size" => patch.batch_size = self.int_in(key, v, 1, 1000),
                "metadata" => {
                    let raw = raw_member(raw.map(RawValue::get), key);
                    patch.metadata = self.object(key, v, raw, MAX_METADATA_BYTES)
                }
                _ => {}
            }
        }
        patch
    }

    /// After an edit is merged: the events must still apply to the object. A problem names
    /// `event` for a webhook of one event, else the place in `events`.
    pub fn webhook_settings(&mut self, s: &WebhookSettings) {
        let listed = s.events.listed();
        for (i, name) in listed.iter().enumerate() {
            let field = match listed.len() {
                1 => "event".to_owned(),
                _ => format!("events[{i}]"),
            };
            self.event_applies(&field, &s.object, name);
        }
    }

    fn url(&mut self, v: &Value) -> Option<String> {
        let s = self.string("url", v, 1, MAX_URL)?;
        // The URL parser forgives what a person would call a typo (spaces, tabs, newlines,
        // backslashes, `http:host` without `//`) and would deliver somewhere other than the
        // stored text says: refuse those instead.
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            self.problem(
                "url",
                "must not contain spaces, control characters or backslashes",
            );
            return None;
        }
        let lower = s.to_ascii_lowercase();
        let Some(rest) = ["http://", "https://"]
            .iter()
            .find_map(|scheme| lower.strip_prefix(scheme))
        else {
            self.problem("url", "must be an absolute http or https URL");
            return None;
        };
        // The parser also reads `http:///x` as `http://x/` and drops an empty `@`, so the
        // host and user info are judged on the text as stored, which is what is sent.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() {
            self.problem("url", "must name a host");
            return None;
        }
        if authority.contains('@') {
            self.problem("url", "must not contain user info: use auth instead");
            return None;
        }
        match url::Url::parse(&s) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                self.problem("url", "must be an absolute http or https URL");
                None
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                self.problem("url", "must name a host");
                None
            }
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                self.problem("url", "must not contain user info: use auth instead");
                None
            }
            // Kept as the URL standard writes it, which is also what is sent: one URL has one
            // spelling (scheme and host in lower case, no default port, `/` for an empty path,
            // dot segments resolved), so the duplicate check (351) sees `HTTP://Host:80/a/../b`
            // and `http://host/b` as the same URL. That spelling percent-encodes what is not
            // ASCII (and writes hosts in punycode): the limit holds for it too.
            Ok(u) if u.as_str().chars().count() > MAX_URL => {
                self.problem(
                    "url",
                    format!("must be at most {MAX_URL} characters as the URL standard writes it (non-ASCII characters percent-encoded)"),
                );
                None
            }
            Ok(u) => Some(kept_url(u)),
            Err(e) => {
                self.problem(
                    "url",
                    format!("must be an absolute http or https URL ({e})"),
                );
                None
            }
        }
    }

    fn headers(&mut self, v: &Value) -> Option<Vec<Header>> {
        let Some(items) = v.as_array() else {
            self.problem("headers", "must be an array of {name, value}");
            return None;
        };
        if items.len() > MAX_HEADERS {
            self.problem("headers", format!("must have at most {MAX_HEADERS} items"));
            return None;
        }
        let before = self.problems.len();
        let headers: Vec<Header> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.header(&format!("headers[{i}]"), item))
            .collect();
        (self.problems.len() == before).then_some(headers)
    }

    /// One header, every problem of its name and of its value reported.
    fn header(&mut self, field: &str, item: &Value) -> Option<Header> {
        let map = self.details(field, &format!("{field}."), Some(item), &["name", "value"])?;
        let name = self.header_name(&format!("{field}.name"), map.get("name"));
        let value = self.header_value(&format!("{field}.value"), map.get("value"));
        Some(Header {
            name: name?,
            value: value?,
        })
    }

    fn header_name(&mut self, field: &str, v: Option<&Value>) -> Option<String> {
        let Some(v) = v else {
            self.problem(field, "name is required");
            return None;
        };
        let name = self.name(field, v, 128)?;
        let lower = name.to_ascii_lowercase();
        if !name.bytes().all(is_token_byte) {
            self.problem(field, "must contain only HTTP token characters");
            return None;
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-") {
            self.problem(field, format!("{name} is reserved and set by hookrpc"));
            return None;
        }
        Some(name)
    }

    fn header_value(&mut self, field: &str, v: Option<&Value>) -> Option<String> {
        let Some(v) = v else {
            self.problem(field, "value is required");
            return None;
        };
        let value = self.string(field, v, 1, 1024)?;
        // Tab is the one control character a header value may hold (RFC 9110).
        if value.chars().any(|c| c.is_control() && c != '\t') {
            self.problem(field, "must not contain CR, LF or other control characters");
            return None;
        }
        Some(value)
    }

    fn auth(&mut self, v: &Value) -> Option<Option<BasicAuth>> {
        // PHP's `[]` is an empty map: no credentials, the same as null.
        if v.is_null() || v.as_array().is_some_and(Vec::is_empty) {
            return Some(None);
        }
        let map = self.details("auth", "auth.", Some(v), &["username", "password"])?;
        let mut part = |name: &str| match map.get(name) {
            Some(v) => self.string(&format!("auth.{name}"), v, 1, 1024),
            None => {
                self.problem(format!("auth.{name}"), format!("{name} is required"));
                None
            }
        };
        let (mut username, mut password) = (part("username"), part("password"));
        for (field, value) in [
            ("auth.username", &mut username),
            ("auth.password", &mut password),
        ] {
            // RFC 7617: neither may contain a control character (C0, DEL or C1); one there
            // is a paste that caught a newline, and no receiver would match it.
            if value
                .as_deref()
                .is_some_and(|v| v.chars().any(char::is_control))
            {
                self.problem(field, "must not contain control characters");
                *value = None;
            }
        }
        if username.as_deref().is_some_and(|u| u.contains(':')) {
            // RFC 7617: the first colon separates user from password, so the receiver would
            // read a different user than the one configured.
            self.problem("auth.username", "must not contain ':'");
            return None;
        }
        Some(Some(BasicAuth {
            username: username?,
            password: password?,
        }))
    }

    fn secret(&mut self, v: &Value) -> Option<String> {
        let s = self.string("secret", v, 1, 200)?;
        let decoded = s
            .strip_prefix("whsec_")
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
        match decoded {
            Some(bytes) if (24..=64).contains(&bytes.len()) => Some(s),
            _ => {
                self.problem(
                    "secret",
                    "must be whsec_ followed by the standard base64 of 24 to 64 bytes, with its = padding",
                );
                None
            }
        }
    }

    /// One `event_details`; `prefix` names its place in an `events` array.
    pub fn event_details(
        &mut self,
        prefix: &str,
        v: Option<&Value>,
        raw: Option<&RawValue>,
    ) -> NewEvent {
        const KEYS: &[&str] = &[
            "object",
            "event",
            "list_id",
            "contact_id",
            "data",
            "idempotency_key",
        ];
        let mut event = NewEvent {
            object: String::new(),
            event: String::new(),
            list_id: 0,
            contact_id: None,
            data: JsonObject::default(),
            idempotency_key: None,
        };
        let name = match prefix.strip_suffix('.') {
            Some(place) => place.to_owned(),
            None => "event_details".to_owned(),
        };
        let Some(map) = self.details(&name, prefix, v, KEYS) else {
            return event;
        };
        let (object, kind) = self.object_event(prefix, map);
        event.object = object.unwrap_or_default();
        event.event = kind.unwrap_or_default();
        let field = |name: &str| format!("{prefix}{name}");
        for (key, v) in map {
            match key.as_str() {
                "list_id" => event.list_id = self.int_in(&field(key), v, 0, i64::MAX).unwrap_or(0),
                "contact_id" if !v.is_null() => {
                    event.contact_id = self.int_in(&field(key), v, 0, i64::MAX)
                }
                "data" => {
                    let raw = raw_member(raw.map(RawValue::get), key);
                    event.data = self
                        .object(&field(key), v, raw, MAX_EVENT_DATA_BYTES)
                        .unwrap_or_default()
                }
                "idempotency_key" => event.idempotency_key = self.string(&field(key), v, 1, 255),
                _ => {}
            }
        }
        event
    }

    /// `events` of addEvents: 1 to 1000 event_details.
    pub fn events(&mut self, v: Option<&Value>, raw: Option<&RawValue>) -> Vec<NewEvent> {
        match v {
            None => Vec::new(),
            Some(Value::Array(items)) if (1..=MAX_EVENTS_PER_CALL).contains(&items.len()) => {
                let raw = raw_items(raw);
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let prefix = format!("events[{i}].");
                        self.event_details(&prefix, Some(item), raw.get(i).copied())
                    })
                    .collect()
            }
            Some(_) => {
                self.problem(
                    "events",
                    format!("must be an array of 1 to {MAX_EVENTS_PER_CALL} event_details"),
                );
                Vec::new()
            }
        }
    }

    /// `sort_order`: ASC or DESC (any case); DESC when absent.
    pub fn sort_order(&mut self, v: Option<&Value>) -> bool {
        match v.map(|v| v.as_str().map(str::to_ascii_uppercase)) {
            None => true,
            Some(Some(s)) if s == "DESC" => true,
            Some(Some(s)) if s == "ASC" => false,
            Some(_) => {
                self.problem("sort_order", "must be ASC or DESC");
                true
            }
        }
    }

    /// `sort_by`: a string; whether it names a field is the search module's call (311).
    pub fn sort_by(&mut self, v: Option<&Value>) -> Option<String> {
        v.and_then(|v| self.string("sort_by", v, 1, 64))
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Characters that take no room when shown: zero-width spaces and joiners, word joiner, BOM.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// A url in the spelling webhooks keep it in (the URL standard's), which is also what is sent.
fn kept_url(url: url::Url) -> String {
    url.into()
}

/// `text` in the spelling a webhook's url is kept in, if it is a URL: a search compares urls
/// whole in that spelling.
pub fn as_kept_url(text: String) -> String {
    url::Url::parse(&text).map(kept_url).unwrap_or(text)
}

/// How many bytes `map` takes serialized, counted without keeping them.
fn serialized_len(map: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, map) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The member `name` of the JSON object `object`, as written (the last one of that name, as
/// `Value` keeps it). Read without a copy of any name or value: it runs for every event published.
fn raw_member<'a>(object: Option<&'a str>, name: &str) -> Option<&'a RawValue> {
    struct Member<'n>(&'n str);
    impl<'de> Visitor<'de> for Member<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(is_it) = map.next_key_seed(NameIs(self.0))? {
                match is_it {
                    true => found = Some(map.next_value::<&RawValue>()?),
                    false => _ = map.next_value::<IgnoredAny>()?,
                }
            }
            Ok(found)
        }
    }
    /// Whether a member's name is the one sought, escaped or not.
    struct NameIs<'n>(&'n str);
    impl<'de> DeserializeSeed<'de> for NameIs<'_> {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl Visitor<'_> for NameIs<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a member name")
        }
        fn visit_str<E>(self, name: &str) -> Result<bool, E> {
            Ok(name == self.0)
        }
    }
    let mut object = serde_json::Deserializer::from_str(object?);
    object.deserialize_map(Member(name)).ok().flatten()
}

/// The items of the array `raw`, as written (none if it is no array).
fn raw_items(raw: Option<&RawValue>) -> Vec<&RawValue> {
    raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default()
}
