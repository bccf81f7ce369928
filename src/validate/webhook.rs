//! `webhook_details`: what addWebhook and editWebhook take, and the settings they make.

use super::{raw_member, Checker};
use crate::model::{BasicAuth, Header, WebhookPatch, WebhookSettings};
use base64::Engine;
use serde_json::value::RawValue;
use serde_json::Value;

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

impl Checker {
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
                    "must be whsec_ followed by the standard base64 of 24 to 64 bytes (with = padding, where the length needs it)",
                );
                None
            }
        }
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
