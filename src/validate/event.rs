//! `event_details`: what addEvent and addEvents publish.

use super::{raw_items, raw_member, Checker};
use crate::model::{JsonObject, NewEvent};
use serde_json::value::RawValue;
use serde_json::Value;

const MAX_EVENT_DATA_BYTES: usize = 256 * 1024;
pub const MAX_EVENTS_PER_CALL: usize = 1000;

impl Checker {
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
}
