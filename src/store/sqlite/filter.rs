//! Searches on SQLite: the neutral criteria of `search.rs` rendered as SQL whose values are all
//! bound parameters.

use super::Sqlite;
use crate::error::ApiError;
use crate::search::{Criteria, Kind, Op, Scalar};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, Row};

/// ` AND …` for each condition, and the parameters in order.
fn conditions(criteria: &Criteria) -> (String, Vec<Sql>) {
    let mut sql = String::new();
    let mut params = Vec::new();
    for c in &criteria.conditions {
        let condition = match c.field.kind {
            Kind::Followed => followed(&c.op, &mut params),
            kind => compare(c.field.column, kind, &c.op, &mut params),
        };
        sql.push_str(" AND ");
        sql.push_str(&condition);
    }
    (sql, params)
}

/// `col` compared as `op` says.
fn compare(col: &str, kind: Kind, op: &Op, params: &mut Vec<Sql>) -> String {
    match op {
        Op::Is(v) => format!("{col} IS {}", bind(params, v)),
        Op::IsNot(v) => format!("{col} IS NOT {}", bind(params, v)),
        Op::GreaterThan(v) => format!("{col} > {}", bind(params, v)),
        Op::LessThan(v) => format!("{col} < {}", bind(params, v)),
        Op::In(values) => {
            let marks: Vec<_> = values.iter().map(|v| bind(params, v)).collect();
            format!("{col} IN ({})", marks.join(", "))
        }
        Op::StartsWith(text) => like(params, kind, col, format!("{}%", escape(text))),
        Op::EndsWith(text) => like(params, kind, col, format!("%{}", escape(text))),
        Op::Contains(text) => like(params, kind, col, format!("%{}%", escape(text))),
    }
}

/// A condition on the events a webhook follows ([`Kind::Followed`]), through the rows of
/// `webhook_events`, where '*' stands for every event.
fn followed(op: &Op, params: &mut Vec<Sql>) -> String {
    let (negated, op) = match op {
        Op::IsNot(v) => ("NOT ", Op::Is(v.clone())),
        op => ("", op.clone()),
    };
    let every = match op {
        Op::Is(Scalar::Null) => "",
        _ => "f.event = '*' OR ",
    };
    let test = compare("f.event", Kind::Text, &op, params);
    format!(
        "{negated}EXISTS (SELECT 1 FROM webhook_events f WHERE f.webhook_id = webhooks.id \
         AND ({every}{test}))"
    )
}

fn bind(params: &mut Vec<Sql>, value: &Scalar) -> &'static str {
    params.push(match value {
        Scalar::Null => Sql::Null,
        Scalar::Int(n) => Sql::Integer(*n),
        Scalar::Text(s) => Sql::Text(s.clone()),
        Scalar::Bool(b) => Sql::Integer(i64::from(*b)),
    });
    "?"
}

/// SQLite's LIKE ignores the case of ASCII letters; a number is matched by its digits.
fn like(params: &mut Vec<Sql>, kind: Kind, col: &str, pattern: String) -> String {
    params.push(Sql::Text(pattern));
    if kind == Kind::Text {
        format!("{col} LIKE ? ESCAPE '\\'")
    } else {
        format!("CAST({col} AS TEXT) LIKE ? ESCAPE '\\'")
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn order_by(criteria: &Criteria) -> String {
    match criteria.sort {
        None => "id ASC".to_owned(),
        Some((field, descending)) => {
            let dir = if descending { "DESC" } else { "ASC" };
            format!("{} {dir}, id {dir}", field.column)
        }
    }
}

/// A page of a search: `SELECT {columns} {from} …` where `from` is `FROM t WHERE account_id = ?`
/// and any conditions of the table's own. Limit 0 means no limit.
pub(super) fn search<T>(
    conn: &Connection,
    columns: &str,
    from: &str,
    account_id: i64,
    criteria: &Criteria,
    (limit, offset): (i64, i64),
    map: impl FnMut(&Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>, ApiError> {
    let (and, mut params) = conditions(criteria);
    let sql = format!(
        "SELECT {columns} {from}{and} ORDER BY {} LIMIT ? OFFSET ?",
        order_by(criteria)
    );
    params.insert(0, Sql::Integer(account_id));
    params.push(Sql::Integer(if limit == 0 { -1 } else { limit }));
    params.push(Sql::Integer(offset));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params), map)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Runs `sql` (an UPDATE whose WHERE ends with its own conditions) with the criteria's
/// conditions appended; `leading` binds the statement's own `?`s, in order. Returns how many
/// rows it changed.
pub(super) fn update(
    conn: &Connection,
    sql: &str,
    leading: Vec<Sql>,
    criteria: &Criteria,
) -> Result<usize, ApiError> {
    let (and, params) = conditions(criteria);
    let mut all = leading;
    all.extend(params);
    Ok(conn
        .prepare_cached(&format!("{sql}{and}"))?
        .execute(rusqlite::params_from_iter(all))?)
}

impl Sqlite {
    /// How many rows a search would find (see [`search`]).
    pub(super) async fn count(
        &self,
        from: &'static str,
        account_id: i64,
        criteria: Criteria,
    ) -> Result<i64, ApiError> {
        self.read(move |conn| {
            let (and, mut params) = conditions(&criteria);
            params.insert(0, Sql::Integer(account_id));
            let sql = format!("SELECT count(*) {from}{and}");
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(rusqlite::params_from_iter(params), |r| r.get(0))?)
        })
        .await
    }
}
