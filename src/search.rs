//! Vision6 search criteria (`[field, operator, value]`, all ANDed) → a neutral [`Criteria`]
//! tree of typed conditions, which each storage backend renders into its own SQL with bound
//! parameters. Which fields exist, and the column expression behind each, is declared by the
//! store next to its table; this module only parses and checks.

use crate::error::ApiError;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    Bool,
    /// The events a webhook follows: text values, several to a webhook, or `*` for every event.
    /// A condition holds when some event followed satisfies it, and `*` satisfies any condition
    /// on an event name (not `exactly null`: null names no event); `not` holds where `exactly`
    /// does not. The field's column is only what sorting uses.
    Followed,
}

/// A searchable field: its API name, the SQL expression behind it (plain SQL every backend
/// reads alike), and its type.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub column: &'static str,
    pub kind: Kind,
}

pub const OPERATORS: &[&str] = &[
    "exactly",
    "not",
    "greater_than",
    "less_than",
    "in",
    "starts_with",
    "ends_with",
    "contains",
];

/// A value of a criterion, typed as its field is.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

/// What a condition asks of its field.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Equal, a null value matching a missing one.
    Is(Scalar),
    IsNot(Scalar),
    GreaterThan(Scalar),
    LessThan(Scalar),
    In(Vec<Scalar>),
    /// The field, as text, starts with, ends with or contains the text (compared as SQLite's
    /// LIKE does: ASCII letters in either case).
    StartsWith(String),
    EndsWith(String),
    Contains(String),
}

#[derive(Debug)]
pub struct Condition {
    pub field: &'static Field,
    pub op: Op,
}

/// A parsed search: conditions ANDed, and the order (by `id` ascending unless sorted).
#[derive(Debug, Default)]
pub struct Criteria {
    pub conditions: Vec<Condition>,
    /// A field and whether descending; ties are broken by `id` in the same direction.
    pub sort: Option<(&'static Field, bool)>,
}

impl Criteria {
    /// True when some condition is on the field named `name`.
    pub fn names(&self, name: &str) -> bool {
        self.conditions.iter().any(|c| c.field.name == name)
    }
}

/// Parses `criteria` (may be absent) and the sort.
pub fn parse(
    fields: &'static [Field],
    criteria: Option<&Value>,
    sort_by: Option<&str>,
    descending: bool,
) -> Result<Criteria, ApiError> {
    let mut parsed = Criteria::default();
    match criteria {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let condition = criterion(fields, item)
                    .map_err(|e| ApiError::InvalidSearch(format!("criterion {i}: {e}")))?;
                parsed.conditions.push(condition);
            }
        }
        Some(_) => {
            return Err(ApiError::InvalidSearch(
                "search_criteria must be an array of [field, operator, value]".into(),
            ))
        }
    }
    if let Some(name) = sort_by {
        let field = find(fields, name).map_err(ApiError::InvalidSearch)?;
        parsed.sort = Some((field, descending));
    }
    Ok(parsed)
}

fn find(fields: &'static [Field], name: &str) -> Result<&'static Field, String> {
    fields.iter().find(|f| f.name == name).ok_or_else(|| {
        let names: Vec<_> = fields.iter().map(|f| f.name).collect();
        format!("unknown field {name:?}; fields: {}", names.join(", "))
    })
}

fn criterion(fields: &'static [Field], item: &Value) -> Result<Condition, String> {
    let (name, op, value) = match item.as_array().map(Vec::as_slice) {
        Some([Value::String(f), Value::String(op), value]) => (f, op, value),
        _ => {
            return Err("must be [field, operator, value] with a string field and operator".into())
        }
    };
    let field = find(fields, name)?;
    let text = || text_of(value);
    let op = match op.as_str() {
        "exactly" => Op::Is(scalar(field, value, true)?),
        "not" => Op::IsNot(scalar(field, value, true)?),
        "greater_than" => Op::GreaterThan(scalar(field, value, false)?),
        "less_than" => Op::LessThan(scalar(field, value, false)?),
        "in" => Op::In(
            in_list(value)?
                .iter()
                .map(|v| scalar(field, v, false))
                .collect::<Result<_, _>>()?,
        ),
        "starts_with" => Op::StartsWith(text()?),
        "ends_with" => Op::EndsWith(text()?),
        "contains" => Op::Contains(text()?),
        other => {
            return Err(format!(
                "unknown operator {other:?}; operators: {}",
                OPERATORS.join(", ")
            ))
        }
    };
    Ok(Condition { field, op })
}

/// `in` takes an array or a comma-separated string.
fn in_list(value: &Value) -> Result<Vec<Value>, String> {
    let items: Vec<Value> = match value {
        Value::Array(items) => items.clone(),
        Value::String(s) => s
            .split(',')
            .map(|p| Value::String(p.trim().to_owned()))
            .collect(),
        _ => return Err("the value of in must be an array or a comma-separated string".into()),
    };
    if items.is_empty() {
        return Err("the value of in must not be empty".into());
    }
    Ok(items)
}

fn text_of(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => searched(s),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err("the value must be a string or a number".into()),
    }
}

/// A url compared whole (`exactly`, `not`, `in`) in the spelling webhooks keep it in, so that
/// `http://Host` finds the webhook kept as `http://host/`. Anything else is compared as given.
fn kept_spelling(field: &Field, text: String) -> String {
    match field.name {
        "url" => crate::validate::as_kept_url(text),
        _ => text,
    }
}

/// A string searched for: no stored text holds NUL (the validator refuses it), so neither may
/// a value (PostgreSQL's text cannot hold one, and both backends answer alike).
fn searched(s: &str) -> Result<String, String> {
    match s.contains('\0') {
        true => Err(format!("the value {}", crate::validate::NO_NUL)),
        false => Ok(s.to_owned()),
    }
}

/// One value, typed as the field is. Strings holding numbers are accepted for integer fields:
/// PHP clients often send them.
fn scalar(field: &Field, value: &Value, null_ok: bool) -> Result<Scalar, String> {
    let bad = || {
        format!(
            "{} takes {} values",
            field.name,
            match field.kind {
                Kind::Int => "integer",
                Kind::Text | Kind::Followed => "string",
                Kind::Bool => "boolean",
            }
        )
    };
    match (field.kind, value) {
        (_, Value::Null) if null_ok => Ok(Scalar::Null),
        (Kind::Int, Value::Number(n)) => n.as_i64().map(Scalar::Int).ok_or_else(bad),
        (Kind::Int, Value::String(s)) => s.trim().parse().map(Scalar::Int).map_err(|_| bad()),
        (Kind::Text | Kind::Followed, Value::String(s)) => {
            searched(s).map(|s| Scalar::Text(kept_spelling(field, s)))
        }
        (Kind::Text | Kind::Followed, Value::Number(n)) => Ok(Scalar::Text(n.to_string())),
        (Kind::Bool, Value::Bool(b)) => Ok(Scalar::Bool(*b)),
        (Kind::Bool, v) => match v
            .as_i64()
            .map(|n| n.to_string())
            .or_else(|| v.as_str().map(str::to_owned))
            .as_deref()
        {
            Some("1" | "true") => Ok(Scalar::Bool(true)),
            Some("0" | "false") => Ok(Scalar::Bool(false)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}
