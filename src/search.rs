//! Vision6 search criteria (`[field, operator, value]`, all ANDed) → a WHERE fragment whose
//! values are bound parameters only. Which fields exist, and the column expression behind each,
//! is declared by the store next to its table; this module only parses and assembles.

use crate::error::ApiError;
use rusqlite::types::Value as Sql;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    Bool,
}

/// A searchable field: its API name, the SQL expression behind it, and its type.
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

/// A parsed search: `conditions` (each with `?` placeholders) ANDed, with `params` in order.
#[derive(Debug, Default)]
pub struct Filter {
    pub conditions: Vec<String>,
    pub params: Vec<Sql>,
    pub order_by: String,
}

impl Filter {
    /// ` AND cond1 AND cond2` (or nothing), to append after the store's own WHERE.
    pub fn and_clause(&self) -> String {
        self.conditions
            .iter()
            .map(|c| format!(" AND {c}"))
            .collect()
    }
}

/// Parses `criteria` (may be absent) and the sort into a [`Filter`].
pub fn parse(
    fields: &[Field],
    criteria: Option<&Value>,
    sort_by: Option<&str>,
    descending: bool,
) -> Result<Filter, ApiError> {
    let mut filter = Filter::default();
    match criteria {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                criterion(fields, item, &mut filter)
                    .map_err(|e| ApiError::InvalidSearch(format!("criterion {i}: {e}")))?;
            }
        }
        Some(_) => {
            return Err(ApiError::InvalidSearch(
                "search_criteria must be an array of [field, operator, value]".into(),
            ))
        }
    }
    filter.order_by = match sort_by {
        None => "id ASC".to_owned(),
        Some(name) => {
            let field = find(fields, name).map_err(ApiError::InvalidSearch)?;
            let dir = if descending { "DESC" } else { "ASC" };
            format!("{} {dir}, id {dir}", field.column)
        }
    };
    Ok(filter)
}

fn find<'a>(fields: &'a [Field], name: &str) -> Result<&'a Field, String> {
    fields.iter().find(|f| f.name == name).ok_or_else(|| {
        let names: Vec<_> = fields.iter().map(|f| f.name).collect();
        format!("unknown field {name:?}; fields: {}", names.join(", "))
    })
}

fn criterion(fields: &[Field], item: &Value, filter: &mut Filter) -> Result<(), String> {
    let triple = match item.as_array().map(Vec::as_slice) {
        Some([Value::String(f), Value::String(op), value]) => (f, op, value),
        _ => {
            return Err("must be [field, operator, value] with a string field and operator".into())
        }
    };
    let (name, op, value) = triple;
    let field = find(fields, name)?;
    let is_pattern = matches!(op.as_str(), "starts_with" | "ends_with" | "contains");
    let col = if is_pattern && field.kind != Kind::Text {
        format!("CAST({} AS TEXT)", field.column)
    } else {
        field.column.to_owned()
    };
    let condition = match op.as_str() {
        "exactly" | "not" => {
            filter.params.push(scalar(field, value, true)?);
            format!("{col} {} ?", if op == "exactly" { "IS" } else { "IS NOT" })
        }
        "greater_than" | "less_than" => {
            filter.params.push(scalar(field, value, false)?);
            format!("{col} {} ?", if op == "greater_than" { ">" } else { "<" })
        }
        "in" => {
            let items = in_list(value)?;
            for v in &items {
                filter.params.push(scalar(field, v, false)?);
            }
            format!("{col} IN ({})", vec!["?"; items.len()].join(", "))
        }
        "starts_with" | "ends_with" | "contains" => {
            let text = text_of(value).ok_or("the value must be a string or a number")?;
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pattern = match op.as_str() {
                "starts_with" => format!("{escaped}%"),
                "ends_with" => format!("%{escaped}"),
                _ => format!("%{escaped}%"),
            };
            filter.params.push(Sql::Text(pattern));
            format!("{col} LIKE ? ESCAPE '\\'")
        }
        other => {
            return Err(format!(
                "unknown operator {other:?}; operators: {}",
                OPERATORS.join(", ")
            ))
        }
    };
    filter.conditions.push(condition);
    Ok(())
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

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One value, typed as the field is. Strings holding numbers are accepted for integer fields:
/// PHP clients often send them.
fn scalar(field: &Field, value: &Value, null_ok: bool) -> Result<Sql, String> {
    let bad = || {
        format!(
            "{} takes {} values",
            field.name,
            match field.kind {
                Kind::Int => "integer",
                Kind::Text => "string",
                Kind::Bool => "boolean",
            }
        )
    };
    match (field.kind, value) {
        (_, Value::Null) if null_ok => Ok(Sql::Null),
        (Kind::Int, Value::Number(n)) => n.as_i64().map(Sql::Integer).ok_or_else(bad),
        (Kind::Int, Value::String(s)) => s.trim().parse().map(Sql::Integer).map_err(|_| bad()),
        (Kind::Text, Value::String(s)) => Ok(Sql::Text(s.clone())),
        (Kind::Text, Value::Number(n)) => Ok(Sql::Text(n.to_string())),
        (Kind::Bool, Value::Bool(b)) => Ok(Sql::Integer(*b as i64)),
        (Kind::Bool, v) => match v
            .as_i64()
            .map(|n| n.to_string())
            .or_else(|| v.as_str().map(str::to_owned))
            .as_deref()
        {
            Some("1" | "true") => Ok(Sql::Integer(1)),
            Some("0" | "false") => Ok(Sql::Integer(0)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}
