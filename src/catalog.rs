//! The event catalog: which objects exist and which events each has. Vision6's list/contact
//! matrix when none is given; an operator running hookrpc for another product gives their own
//! TOML file (`--catalog`). The objects `webhook` and `delivery` are hookrpc's own (its
//! operational events) and are in every catalog.

use crate::model::{Events, EVERY_EVENT};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// Objects and their events, in the order given (the order `hookrpc catalog` prints, and the
/// order of the OpenRPC document's enums).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    objects: Vec<(String, Vec<String>)>,
}

/// hookrpc's own objects, present in every catalog.
const RESERVED: &[(&str, &[&str])] = &[
    (
        "webhook",
        &["circuit_opened", "circuit_closed", "deactivated"],
    ),
    ("delivery", &["failed"]),
];

const VISION6: &[(&str, &[&str])] = &[
    ("list", &["created", "updated", "removed", "bulk_updated"]),
    (
        "contact",
        &[
            "created",
            "updated",
            "removed",
            "subscribed",
            "unsubscribed",
            "deactivated",
            "reactivated",
        ],
    ),
];

/// Whether `object` is one of hookrpc's own (operational events), which only hookrpc publishes.
pub fn is_reserved(object: &str) -> bool {
    RESERVED.iter().any(|(r, _)| *r == object)
}

static ACTIVE: OnceLock<Catalog> = OnceLock::new();

/// The catalog this process runs with: the one [`install`]ed at start, else Vision6's.
pub fn active() -> &'static Catalog {
    ACTIVE.get_or_init(Catalog::vision6)
}

/// Makes `catalog` the active one; only before anything has asked for it.
pub fn install(catalog: Catalog) -> Result<(), String> {
    ACTIVE
        .set(catalog)
        .map_err(|_| "the catalog is already in use".to_owned())
}

fn owned(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    list.iter()
        .map(|(object, events)| {
            let events = events.iter().map(|e| e.to_string()).collect();
            (object.to_string(), events)
        })
        .collect()
}

impl Catalog {
    /// Vision6's objects and events (with the reserved ones).
    pub fn vision6() -> Catalog {
        let mut objects = owned(VISION6);
        objects.extend(owned(RESERVED));
        Catalog { objects }
    }

    /// Reads a catalog file:
    ///
    /// ```toml
    /// [objects]
    /// orders = ["place", "cancel", "fulfill"]
    /// ```
    ///
    /// Every problem is reported at once, each naming where it is.
    pub fn from_toml(text: &str) -> Result<Catalog, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("not TOML: {e}"))?;
        let mut problems = Vec::new();
        for key in table.keys().filter(|k| *k != "objects") {
            problems.push(format!(
                "unknown key {key:?}: the file has one table, [objects]"
            ));
        }
        let objects = match table.get("objects") {
            Some(toml::Value::Table(objects)) if !objects.is_empty() => objects,
            Some(toml::Value::Table(_)) => return Err("[objects] is empty".into()),
            Some(_) => return Err("objects must be a table: [objects]".into()),
            None => return Err("no [objects] table".into()),
        };
        let mut parsed = Vec::new();
        for (object, events) in objects {
            if let Some(events) = object_events(object, events, &mut problems) {
                parsed.push((object.clone(), events));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        parsed.extend(owned(RESERVED));
        Ok(Catalog { objects: parsed })
    }

    pub fn has_object(&self, object: &str) -> bool {
        self.events(object).is_some()
    }

    /// The events of `object`; None for an object the catalog does not have.
    pub fn events(&self, object: &str) -> Option<&[String]> {
        self.objects
            .iter()
            .find(|(o, _)| o == object)
            .map(|(_, events)| events.as_slice())
    }

    pub fn objects(&self) -> impl Iterator<Item = &str> {
        self.objects.iter().map(|(o, _)| o.as_str())
    }

    /// True when `object.event` is in the catalog.
    pub fn has(&self, object: &str, event: &str) -> bool {
        self.events(object)
            .is_some_and(|events| events.iter().any(|e| e == event))
    }

    /// What a webhook of `object` following `events` needs that this catalog lacks, as
    /// `object.event` names (`object.*` when every event of a lost object is followed). `*`
    /// needs only the object: it follows whatever events the object has.
    pub fn lacks(&self, object: &str, events: &Events) -> Vec<String> {
        if !self.has_object(object) && events == &Events::Every {
            return vec![format!("{object}.{EVERY_EVENT}")];
        }
        events
            .listed()
            .iter()
            .filter(|event| !self.has(object, event))
            .map(|event| format!("{object}.{event}"))
            .collect()
    }

    /// The catalog as a file `--catalog` would read (reserved objects as comments: they are
    /// in every catalog and cannot be given).
    pub fn to_toml(&self) -> String {
        let list = |events: &[String]| {
            let quoted: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
            format!("[{}]", quoted.join(", "))
        };
        let mut out = String::from("[objects]\n");
        for (object, events) in &self.objects {
            if is_reserved(object) {
                continue;
            }
            out.push_str(&format!("{object} = {}\n", list(events)));
        }
        out.push_str("\n# hookrpc's own objects, in every catalog:\n");
        for (object, events) in owned(RESERVED) {
            out.push_str(&format!("# {object} = {}\n", list(&events)));
        }
        out
    }

    /// Writes this catalog's objects and events into the OpenRPC document's enums: the
    /// `Object`, `EventName` and `WebhookEventName` (the names and `*`) schemas, and the
    /// per-object event rules of webhook and event details; leaves out the examples, which are
    /// Vision6's, unless this is Vision6's catalog.
    pub fn describe_in(&self, openrpc: &mut Value) {
        let schemas = &mut openrpc["components"]["schemas"];
        schemas["Object"]["enum"] = json!(self.objects().collect::<Vec<_>>());
        let mut all: Vec<&str> = Vec::new();
        for (_, events) in &self.objects {
            for e in events {
                if !all.contains(&e.as_str()) {
                    all.push(e);
                }
            }
        }
        schemas["EventName"]["enum"] = json!(all);
        schemas["WebhookEventName"]["enum"] = json!(with_every(&all));
        let webhook_rules = self.rules(|events| {
            json!({"event": {"enum": events}, "events": {"items": {"enum": with_every(events)}}})
        });
        for schema in ["WebhookDetailsNew", "WebhookDetailsEdit"] {
            schemas[schema]["allOf"] = webhook_rules.clone();
            self.describe_events(&mut schemas[schema]["description"]);
        }
        schemas["EventDetails"]["allOf"] = self.rules(|events| json!({"event": {"enum": events}}));
        // The examples are a session against a fresh server with Vision6's catalog, each
        // building on the last (webhook 1, delivery 2): with another catalog, most would be
        // refused and the rest would name what was never made.
        if *self != Catalog::vision6() {
            for method in openrpc["methods"].as_array_mut().into_iter().flatten() {
                if let Some(method) = method.as_object_mut() {
                    method.remove("examples");
                }
            }
        }
    }

    /// Rewrites the sentence of `description` that lists each object's events ("… must apply
    /// to the object: list has created, …; contact has …."), the default catalog's in the
    /// committed document, with this catalog's (hookrpc's own objects aside, as there).
    fn describe_events(&self, description: &mut Value) {
        const LEAD: &str = "must apply to the object: ";
        let Some(text) = description.as_str() else {
            return;
        };
        let Some(start) = text.find(LEAD).map(|at| at + LEAD.len()) else {
            return;
        };
        let end = start + text[start..].find('.').unwrap_or(text.len() - start);
        let listed: Vec<String> = self
            .objects
            .iter()
            .filter(|(object, _)| !is_reserved(object))
            .map(|(object, events)| format!("{object} has {}", events.join(", ")))
            .collect();
        *description = json!(format!(
            "{}{}{}",
            &text[..start],
            listed.join("; "),
            &text[end..]
        ));
    }

    /// One JSON Schema rule per object: `if` the object is this one, `then` the `properties`
    /// made of its events.
    fn rules(&self, properties: impl Fn(&[String]) -> Value) -> Value {
        self.objects
            .iter()
            .map(|(object, events)| {
                json!({
                    "if": {"required": ["object"], "properties": {"object": {"const": object}}},
                    "then": {"properties": properties(events)}
                })
            })
            .collect()
    }
}

/// Event names and `*`, the names a webhook's `events` may hold.
fn with_every<S: AsRef<str>>(events: &[S]) -> Vec<&str> {
    events
        .iter()
        .map(AsRef::as_ref)
        .chain([EVERY_EVENT])
        .collect()
}

/// One object's events from the file, or None after noting what is wrong with them.
fn object_events(
    object: &str,
    events: &toml::Value,
    problems: &mut Vec<String>,
) -> Option<Vec<String>> {
    let before = problems.len();
    if let Err(why) = check_name(object) {
        problems.push(format!("object {object:?}: {why}"));
    }
    if is_reserved(object) {
        problems.push(format!(
            "object {object:?} is hookrpc's own (its operational events) and cannot be given"
        ));
    }
    let Some(list) = events.as_array() else {
        problems.push(format!("{object}: must be a list of event names"));
        return None;
    };
    if list.is_empty() {
        problems.push(format!("{object}: has no events"));
    }
    let mut names: Vec<String> = Vec::new();
    for event in list {
        match event.as_str() {
            None => problems.push(format!("{object}: {event:?} is not a string")),
            Some(name) if names.iter().any(|n| n == name) => {
                problems.push(format!("{object}.{name}: listed twice"))
            }
            Some(name) => {
                if let Err(why) = check_name(name) {
                    problems.push(format!("{object}.{name:?}: {why}"));
                }
                names.push(name.to_owned());
            }
        }
    }
    (problems.len() == before).then_some(names)
}

/// Names are 1–64 characters of `a-z`, `0-9`, `_`, `-`, `.`, starting with a letter.
fn check_name(name: &str) -> Result<(), &'static str> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    if name.is_empty() || name.len() > 64 {
        Err("a name is 1 to 64 characters")
    } else if !name.as_bytes()[0].is_ascii_lowercase() {
        Err("a name starts with a lowercase letter")
    } else if !valid_chars {
        Err("a name has only a-z, 0-9, '_', '-' and '.'")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_in_order_with_the_reserved_objects_after_it() {
        let c = Catalog::from_toml(
            "[objects]\norders = [\"place\", \"cancel\"]\nmessage = [\"opened\"]\n",
        )
        .unwrap();
        let objects: Vec<_> = c.objects().collect();
        assert_eq!(objects, ["orders", "message", "webhook", "delivery"]);
        assert!(c.has("orders", "cancel"));
        assert!(!c.has("orders", "opened"));
        assert!(c.has("delivery", "failed"));
        assert_eq!(Catalog::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn every_problem_of_a_bad_file_is_named() {
        let err = Catalog::from_toml(
            "[objects]\nOrders = [\"place\"]\nmessage = []\nx = [\"a\", \"a\"]\nwebhook = [\"x\"]\n",
        )
        .unwrap_err();
        for words in [
            "\"Orders\"",
            "message: has no events",
            "x.a: listed twice",
            "\"webhook\"",
        ] {
            assert!(err.contains(words), "{words} in {err}");
        }
        for bad in [
            "",
            "objects = 1",
            "[objects]",
            "[objects]\na = \"b\"",
            "[other]\na = [\"b\"]",
            "not toml [",
        ] {
            assert!(Catalog::from_toml(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn what_a_webhook_needs_is_its_object_and_each_event_it_names() {
        let c = Catalog::from_toml("[objects]\norders = [\"place\"]\n").unwrap();
        let listed = |names: &[&str]| Events::Listed(names.iter().map(|n| n.to_string()).collect());
        assert!(c.lacks("orders", &listed(&["place"])).is_empty());
        assert!(c.lacks("orders", &Events::Every).is_empty());
        assert_eq!(
            c.lacks("orders", &listed(&["place", "cancel", "refund"])),
            ["orders.cancel", "orders.refund"]
        );
        assert_eq!(c.lacks("list", &listed(&["created"])), ["list.created"]);
        assert_eq!(c.lacks("list", &Events::Every), ["list.*"]);
    }

    #[test]
    fn the_default_is_vision6_with_the_reserved_objects() {
        let c = Catalog::vision6();
        assert!(c.has("list", "bulk_updated"));
        assert!(!c.has("contact", "bulk_updated"));
        assert!(c.has("webhook", "circuit_opened"));
    }
}
