//! The domain: access levels, the Vision6 object × event matrix, and the shapes the API
//! returns. Rows are turned into JSON here so every method shows an object the same way.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a key may do. `Standard` reads (without secrets), publishes and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Full,
    Standard,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Full => "full",
            Access::Standard => "standard",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Access::Full),
            "standard" => Some(Access::Standard),
            _ => None,
        }
    }

    pub fn allows(self, needed: Access) -> bool {
        self == Access::Full || needed == Access::Standard
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub account_id: i64,
    pub access: Access,
}

/// The `ping` event of `testWebhook` is in no catalog: it is only ever created by us.
pub const PING_EVENT: &str = "ping";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

/// What `events` holds for a webhook that follows every event of its object.
pub const EVERY_EVENT: &str = "*";

/// The events a webhook follows: some events of its object, or every one, present and future
/// (`["*"]`). Shown and stored as the array of names (`["*"]` for every one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub enum Events {
    Every,
    /// Distinct names, in the order given.
    Listed(Vec<String>),
}

impl Events {
    /// The one event followed, if there is exactly one: what replies show as `event`.
    pub fn single(&self) -> Option<&str> {
        match self {
            Events::Listed(names) if names.len() == 1 => Some(&names[0]),
            _ => None,
        }
    }

    /// The names as shown and stored: `["*"]` for every event.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Events::Every => vec![EVERY_EVENT],
            Events::Listed(names) => names.iter().map(String::as_str).collect(),
        }
    }

    /// The events named one by one (none for `*`, which names no event).
    pub fn listed(&self) -> &[String] {
        match self {
            Events::Every => &[],
            Events::Listed(names) => names,
        }
    }

    /// Whether some event would reach a webhook following `self` and one following `other`
    /// (of the same object): the 351 rule, so that no URL receives one event twice.
    pub fn overlaps(&self, other: &Events) -> bool {
        match (self, other) {
            (Events::Every, _) | (_, Events::Every) => true,
            (Events::Listed(mine), Events::Listed(theirs)) => {
                mine.iter().any(|event| theirs.contains(event))
            }
        }
    }
}

impl From<Vec<String>> for Events {
    fn from(names: Vec<String>) -> Events {
        if names.iter().any(|n| n == EVERY_EVENT) {
            Events::Every
        } else {
            Events::Listed(names)
        }
    }
}

impl From<Events> for Vec<String> {
    fn from(events: Events) -> Vec<String> {
        match events {
            Events::Every => vec![EVERY_EVENT.to_owned()],
            Events::Listed(names) => names,
        }
    }
}

/// A webhook's settings as the user controls them (everything `webhook_details` can hold).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub name: String,
    pub description: String,
    pub object: String,
    pub events: Events,
    pub list_id: i64,
    pub url: String,
    pub headers: Vec<Header>,
    pub auth: Option<BasicAuth>,
    pub secret: String,
    pub is_active: bool,
    pub batch_size: i64,
    pub metadata: JsonObject,
}

impl WebhookSettings {
    /// The url as its receiver is reached: without its fragment (`#…`), which a request never
    /// carries. Two webhooks whose urls differ only there send to the same receiver, so the
    /// duplicate rule (351) compares this.
    pub fn receiver_url(&self) -> &str {
        self.url.split_once('#').map_or(&self.url, |(url, _)| url)
    }

    /// Whether `other` has what the duplicate rule (351) compares: object, events, list_id and
    /// url. An edit that keeps them cannot make a duplicate, so it is not checked again (two
    /// webhooks whose urls differ only by a fragment were no duplicates before that rule).
    pub fn same_identity(&self, other: &WebhookSettings) -> bool {
        (&self.object, &self.events, self.list_id, &self.url)
            == (&other.object, &other.events, other.list_id, &other.url)
    }
}

/// The keys of `webhook_details` that were given; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub object: Option<String>,
    /// From `event` (one) or `events`.
    pub events: Option<Events>,
    pub list_id: Option<i64>,
    pub url: Option<String>,
    pub headers: Option<Vec<Header>>,
    pub auth: Option<Option<BasicAuth>>,
    pub secret: Option<String>,
    pub is_active: Option<bool>,
    pub batch_size: Option<i64>,
    pub metadata: Option<JsonObject>,
}

impl WebhookPatch {
    /// A new webhook: the patch over the defaults of API.md. The validator has made sure the
    /// required keys are present.
    pub fn into_new(self, generated_secret: String) -> WebhookSettings {
        let object = self.object.unwrap_or_default();
        let events = self.events.unwrap_or(Events::Listed(Vec::new()));
        WebhookSettings {
            name: self.name.unwrap_or_else(|| default_name(&object, &events)),
            description: self.description.unwrap_or_default(),
            list_id: self.list_id.unwrap_or(0),
            url: self.url.unwrap_or_default(),
            headers: self.headers.unwrap_or_default(),
            auth: self.auth.unwrap_or(None),
            secret: self.secret.unwrap_or(generated_secret),
            is_active: self.is_active.unwrap_or(true),
            batch_size: self.batch_size.unwrap_or(100),
            metadata: self.metadata.unwrap_or_default(),
            object,
            events,
        }
    }

    /// An edit: only the keys given change.
    pub fn apply(self, mut s: WebhookSettings) -> WebhookSettings {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { s.$f = v; } )* };
        }
        set!(
            name,
            description,
            object,
            events,
            list_id,
            url,
            headers,
            auth,
            secret,
            is_active,
            batch_size,
            metadata
        );
        s
    }
}

/// A webhook's name when none is given: `{object}.{event}` for one event, `{object}` for
/// several (or every one).
fn default_name(object: &str, events: &Events) -> String {
    match events.single() {
        Some(event) => format!("{object}.{event}"),
        None => object.to_owned(),
    }
}

/// A validated `event_details`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub object: String,
    pub event: String,
    pub list_id: i64,
    pub contact_id: Option<i64>,
    pub data: JsonObject,
    pub idempotency_key: Option<String>,
}

/// A JSON object kept as the client wrote it, but for the whitespace between tokens: an
/// event's `data`, a webhook's `metadata`. serde_json's `Value` would round integers beyond 64
/// bits and long decimals to the nearest double, and rewrite `1e2` as `100.0`; the receiver
/// must get the numbers it was sent.
#[derive(Debug, Clone)]
pub struct JsonObject(Box<RawValue>);

impl JsonObject {
    /// `raw`, which must be an object, without its insignificant whitespace.
    pub fn compact(raw: &RawValue) -> JsonObject {
        let text = raw.get();
        let mut kept = String::with_capacity(text.len());
        // Runs of kept text between whitespace are copied whole. Every byte looked at is
        // ASCII, which in UTF-8 never stands inside another character.
        let (mut run, mut in_string, mut escaped) = (0, false, false);
        for (at, byte) in text.bytes().enumerate() {
            if in_string {
                (in_string, escaped) = match byte {
                    _ if escaped => (true, false),
                    b'\\' => (true, true),
                    b'"' => (false, false),
                    _ => (true, false),
                };
            } else if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                kept.push_str(&text[run..at]);
                run = at + 1;
            } else if byte == b'"' {
                in_string = true;
            }
        }
        kept.push_str(&text[run..]);
        JsonObject::stored(kept)
    }

    /// An object hookrpc built itself.
    pub fn of(map: &Map<String, Value>) -> JsonObject {
        JsonObject::stored(serde_json::to_string(map).unwrap_or_default())
    }

    /// Text read back from the database (`{}` were a row ever damaged).
    pub fn stored(text: String) -> JsonObject {
        JsonObject(RawValue::from_string(text).unwrap_or_else(|_| JsonObject::default().0))
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl Default for JsonObject {
    fn default() -> Self {
        JsonObject(RawValue::from_string("{}".to_owned()).expect("an empty object"))
    }
}

impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for JsonObject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Time as the API shows it: Unix epoch seconds.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// Internal scheduling runs in milliseconds so that short test schedules work.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A stored webhook: the user's settings plus what delivery has learnt about it.
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub id: i64,
    pub settings: WebhookSettings,
    pub circuit_state: String,
    pub consecutive_failures: i64,
    pub last_error_time: Option<i64>,
    pub last_error_message: Option<String>,
    pub last_success_time: Option<i64>,
    pub creation_time: i64,
    pub last_modified_time: i64,
}

/// What a hidden value (a password; a header value for standard keys) looks like in replies.
pub const MASKED: &str = "********";

impl WebhookRecord {
    /// The Webhook of API.md; `secret` and header values only for full-access callers (the
    /// Basic-auth password for nobody). Serialized straight into
    /// the reply, without building a JSON tree first.
    pub fn view(&self, access: Access) -> WebhookView<'_> {
        let s = &self.settings;
        WebhookView {
            id: self.id,
            name: &s.name,
            description: &s.description,
            object: &s.object,
            event: s.events.single(),
            events: s.events.names(),
            list_id: s.list_id,
            url: &s.url,
            headers: Headers {
                headers: &s.headers,
                masked: access != Access::Full,
            },
            auth: s.auth.as_ref().map(|a| MaskedAuth {
                username: &a.username,
                password: MASKED,
            }),
            is_active: s.is_active,
            batch_size: s.batch_size,
            metadata: &s.metadata,
            circuit_state: &self.circuit_state,
            consecutive_failures: self.consecutive_failures,
            last_error: self
                .last_error_time
                .zip(self.last_error_message.as_deref())
                .map(|(time, message)| LastError { time, message }),
            last_success_time: self.last_success_time,
            creation_time: self.creation_time,
            last_modified_time: self.last_modified_time,
            secret: (access == Access::Full).then_some(s.secret.as_str()),
        }
    }
}

/// A webhook as the API shows it (see [`WebhookRecord::view`]).
#[derive(Serialize)]
pub struct WebhookView<'a> {
    id: i64,
    name: &'a str,
    description: &'a str,
    object: &'a str,
    /// The one event followed, else null.
    event: Option<&'a str>,
    events: Vec<&'a str>,
    list_id: i64,
    url: &'a str,
    headers: Headers<'a>,
    auth: Option<MaskedAuth<'a>>,
    is_active: bool,
    batch_size: i64,
    metadata: &'a JsonObject,
    circuit_state: &'a str,
    consecutive_failures: i64,
    last_error: Option<LastError<'a>>,
    last_success_time: Option<i64>,
    creation_time: i64,
    last_modified_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

/// A webhook's headers as a reader sees them: values masked for standard keys, since a
/// header is where bearer tokens and API keys of the receiver usually go. Names stay, so a
/// reader still knows which headers are sent.
struct Headers<'a> {
    headers: &'a [Header],
    masked: bool,
}

impl Serialize for Headers<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            name: &'a str,
            value: &'a str,
        }
        serializer.collect_seq(self.headers.iter().map(|h| Shown {
            name: &h.name,
            value: if self.masked { MASKED } else { &h.value },
        }))
    }
}

#[derive(Serialize)]
struct MaskedAuth<'a> {
    username: &'a str,
    password: &'static str,
}

/// `last_error` of a webhook: when, and what went wrong in words.
#[derive(Serialize)]
struct LastError<'a> {
    time: i64,
    message: &'a str,
}

/// One item of a delivery request's body (API.md §4).
#[derive(Serialize)]
pub struct WireItem<'a> {
    pub id: i64,
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub object: &'a str,
    pub event: &'a str,
    pub list_id: i64,
    pub contact_id: Option<i64>,
    /// The event's creation time.
    pub timestamp: i64,
    /// The event's `data`, as stored.
    #[serde(borrow)]
    pub data: &'a serde_json::value::RawValue,
}

/// A stored event, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub object: String,
    pub event: String,
    pub list_id: i64,
    pub contact_id: Option<i64>,
    /// As stored (always JSON; null were a row ever damaged).
    pub data: Box<serde_json::value::RawValue>,
    pub idempotency_key: Option<String>,
    pub creation_time: i64,
    pub delivery_count: i64,
}

/// One delivery (an event at one webhook), as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub webhook_id: i64,
    pub event_id: i64,
    /// `pending`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub attempt_count: i64,
    pub next_attempt_time: Option<i64>,
    pub last_attempt_time: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub creation_time: i64,
    /// Only `getDeliveryById` shows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptRecord>>,
}

/// One request that carried a delivery, and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub time: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// The first 4 KiB of the receiver's reply, lossy UTF-8.
    pub response_body: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The delivery engine's records: what a claim hands it, and what it reports back.

/// Where and how one webhook is sent to, as the engine needs it.
#[derive(Debug, Clone)]
pub struct Target {
    pub webhook_id: i64,
    /// Whose webhook it is (what its sealed secrets are bound to).
    pub account_id: i64,
    pub url: String,
    pub headers: Vec<Header>,
    pub auth: Option<BasicAuth>,
    /// The current secret first; a rotated-out one while it still signs.
    pub secrets: Vec<String>,
    /// How many times an edit had turned the webhook on again when this was read.
    pub activation: i64,
}

/// A claimed delivery and what the engine must know to schedule its next attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    /// Attempts made in the current run of the retry schedule, before this one.
    pub attempts_in_schedule: i64,
    /// The item of the wire format (API.md §4), as sent: held this way it takes a fraction of
    /// the memory of a JSON tree, and is not serialized again for each attempt.
    pub item: Box<serde_json::value::RawValue>,
}

/// One request's worth of work: up to `batch_size` deliveries for one webhook.
#[derive(Debug, Clone)]
pub struct Claim {
    pub target: Target,
    pub deliveries: Vec<ClaimedDelivery>,
}

/// What a claim took, and whether it left due work for want of room.
#[derive(Debug, Default)]
pub struct Claimed {
    pub claims: Vec<Claim>,
    /// Work may be due that was left for want of room (a webhook had none, or this claim used
    /// it up): one of its batches finishing makes room.
    pub passed_by: bool,
    /// The claim stopped before it had looked at every webhook with work due (it visits at
    /// most so many at once): claim again.
    pub truncated: bool,
}

/// What becomes of one delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    RetryAt { due_ms: i64 },
    Failed,
}

/// The result of one request, for all the deliveries it carried.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub webhook_id: i64,
    /// Where the request went: what it says about the webhook holds only while the webhook
    /// still has this url.
    pub url: String,
    pub next: Vec<(i64, Next)>,
    pub time: i64,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    /// None on success; otherwise what went wrong, in words.
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// 410 Gone: the receiver asked to stop.
    pub deactivate: bool,
    /// The webhook's [`Target::activation`] when the deliveries were claimed: an answer to a
    /// request claimed before its webhook was turned on again says nothing about the webhook as
    /// it is now.
    pub activation: i64,
    /// Drawn at random for each request, and kept with its attempt by the record: a record
    /// tried again finds by it whether the try that failed had committed after all.
    pub key: i64,
    /// Whether a try to record this outcome failed before. On PostgreSQL, a commit whose
    /// answer was lost with its connection may have gone through. (SQLite answers in-process:
    /// a commit that failed did not happen.)
    pub tried_before: bool,
}

/// How many more batches the engine can take for each webhook now: what it already holds
/// counts against each webhook's limit on requests in flight.
#[derive(Debug, Clone, Default)]
pub struct Room {
    /// Webhooks the engine holds work for, or has learnt a limit for.
    pub known: std::collections::HashMap<i64, usize>,
    /// Any other webhook.
    pub otherwise: usize,
}

impl Room {
    pub fn batches(&self, webhook_id: i64) -> usize {
        self.known
            .get(&webhook_id)
            .copied()
            .unwrap_or(self.otherwise)
    }

    /// The webhooks with no room: a claim passes them by.
    pub fn full(&self) -> Vec<i64> {
        let full = self.known.iter().filter(|(_, room)| **room == 0);
        full.map(|(id, _)| *id).collect()
    }
}

/// What an engine takes as work is queued (see `store::Taker`).
#[derive(Debug, Clone)]
pub struct Offer {
    /// When the lease of what it takes ends (epoch ms).
    pub lease_end: i64,
    /// The batches it takes for each webhook, as for a claim; what is left over is queued for
    /// a claim, as is all work of an open circuit.
    pub room: Room,
    /// The most deliveries it takes.
    pub most: usize,
    /// The engine's count of webhook changes heard when it offered (see
    /// `store::Taker::webhooks_changed`): work read after the offer is at least that fresh.
    pub changes_heard: u64,
}

/// Circuit breaker settings, passed in by the engine.
#[derive(Debug, Clone, Copy)]
pub struct CircuitPolicy {
    pub threshold: i64,
    pub probe_interval_ms: i64,
    /// A circuit open this long (seconds) deactivates its webhook at the next failure; `None`
    /// never.
    pub disable_after_secs: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Delivery statistics (`getDeliveryStats`): kept per webhook and per account as each attempt
// is recorded, so a question about a day costs a day's worth of rows, however many deliveries
// (or webhooks) it saw.

/// The lengths (seconds) of the periods attempts are counted in: a minute for short intervals,
/// an hour for intervals of whole hours. Every attempt is counted once in each.
pub const STATS_SPANS: [i64; 2] = [60, 3600];

/// The upper bound (ms) of the latency class `duration_ms` falls in. Durations are counted
/// by class rather than kept one by one, so percentiles come from a bounded number of rows:
/// below 16 ms each millisecond is its own class; above, each power of two is cut into 8
/// classes, so a class is at most 12.5 % wide. (Durations past 2^40 ms, 35 years, share one.)
pub fn latency_class(duration_ms: i64) -> i64 {
    let ms = duration_ms.clamp(0, 1 << 40);
    if ms < 16 {
        return ms;
    }
    let shift = 63 - ms.leading_zeros() as i64 - 3;
    (((ms >> shift) + 1) << shift) - 1
}

/// What one attempt adds to the statistics of its webhook and its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTally {
    /// Epoch seconds of the attempt.
    pub time: i64,
    /// [`latency_class`] of its duration.
    pub latency_class: i64,
    /// Deliveries it carried, by what became of them.
    pub succeeded: i64,
    pub retried: i64,
    pub failed: i64,
}

/// Which statistics to read: attempts of one webhook (or of every webhook of the account)
/// counted in periods of `span` seconds starting in `from..until`, summed per bucket of
/// `interval` seconds. `from` and `interval` are multiples of `span`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsQuery {
    pub webhook_id: Option<i64>,
    pub span: i64,
    pub from: i64,
    pub until: i64,
    pub interval: i64,
}

/// One latency class of one bucket: the sums of what its attempts did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsCell {
    /// The bucket's position, 0 for the one starting at `from`.
    pub bucket: i64,
    pub latency_class: i64,
    pub attempts: i64,
    pub succeeded: i64,
    pub retried: i64,
    pub failed: i64,
}

/// One bucket of `getDeliveryStats`, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsBucket {
    pub time: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub retried: i64,
    pub attempts: i64,
    /// Null when the bucket has no attempt.
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_kept_as_written_but_for_whitespace_between_tokens() {
        let written =
            "{ \"a\" :\t[1e2 ,\n 1.50],\r\n \"s\": \"x \\\" \\\\\", \"é\" : \"\\u00e9 y\" }";
        let raw = RawValue::from_string(written.to_owned()).unwrap();
        assert_eq!(
            JsonObject::compact(&raw).as_str(),
            "{\"a\":[1e2,1.50],\"s\":\"x \\\" \\\\\",\"é\":\"\\u00e9 y\"}"
        );
    }

    fn listed(names: &[&str]) -> Events {
        Events::Listed(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn events_overlap_when_they_share_a_name_or_either_is_every_event() {
        assert!(listed(&["a", "b"]).overlaps(&listed(&["c", "b"])));
        assert!(!listed(&["a", "b"]).overlaps(&listed(&["c"])));
        assert!(Events::Every.overlaps(&listed(&["c"])));
        assert!(listed(&["c"]).overlaps(&Events::Every));
    }

    #[test]
    fn events_are_the_array_of_names_with_star_for_every_event() {
        assert_eq!(serde_json::to_string(&Events::Every).unwrap(), r#"["*"]"#);
        let read: Events = serde_json::from_str(r#"["*"]"#).unwrap();
        assert_eq!(read, Events::Every);
        let read: Events = serde_json::from_str(r#"["b","a"]"#).unwrap();
        assert_eq!(read, listed(&["b", "a"]));
        assert_eq!(read.single(), None);
        assert_eq!(listed(&["a"]).single(), Some("a"));
        assert_eq!(Events::Every.single(), None);
    }

    #[test]
    fn latency_classes_are_exact_when_short_and_at_most_an_eighth_wide_after() {
        assert_eq!(latency_class(-3), 0);
        assert_eq!(latency_class(15), 15);
        assert_eq!(latency_class(16), 17);
        assert_eq!(latency_class(100), 103);
        assert_eq!(latency_class(103), 103);
        assert_eq!(latency_class(104), 111);
        let mut previous = latency_class(16);
        for ms in 17..200_000 {
            let class = latency_class(ms);
            assert!(class >= ms && (class - ms) * 8 <= ms, "{ms} -> {class}");
            assert!(class >= previous, "classes grow with the duration");
            previous = class;
        }
        assert_eq!(latency_class(i64::MAX), latency_class(1 << 40));
    }
}
