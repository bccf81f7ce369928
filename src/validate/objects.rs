//! An object and its events, as webhooks and events name them, checked against the catalog.

use super::Checker;
use crate::catalog;
use crate::model::{Events, EVERY_EVENT};
use serde_json::{Map, Value};

/// The most events one webhook may name.
const MAX_WEBHOOK_EVENTS: usize = 64;

impl Checker {
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
    pub(super) fn object_event(
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
    pub(super) fn object_events(
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

    pub(super) fn event_applies(&mut self, field: &str, object: &str, event: &str) -> bool {
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
}
