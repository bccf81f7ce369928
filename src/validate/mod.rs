//! THE validator: raw JSON in, typed values out, and every problem collected at once (310).
//! The rules of API.md live here and nowhere else, so a client always hears the same words
//! for the same mistake.
//!
//! It takes input the way PHP writes it, because PHP clients are the ones this API was made
//! for: `json_encode` writes an empty PHP array as `[]` (it cannot tell an empty list from an
//! empty map), integers read from a database arrive as strings of digits, and booleans stored
//! as TINYINT as 0/1 (or "0"/"1"). Anything else of the wrong type is still a 310.

use crate::error::{ApiError, Problem};
use crate::model::JsonObject;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod event;
mod objects;
mod webhook;

pub use event::MAX_EVENTS_PER_CALL;
pub use webhook::as_kept_url;

/// The problem with a string holding U+0000, which no stored text may hold.
pub const NO_NUL: &str = "must not contain the NUL character (\\u0000)";

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

/// Characters that take no room when shown: zero-width spaces and joiners, word joiner, BOM.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
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
