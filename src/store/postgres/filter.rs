//! Searches on PostgreSQL: the neutral criteria of `search.rs` rendered as SQL whose values are
//! all bound parameters, matching SQLite's semantics (a null equals a null, text compares and
//! sorts bytewise, `LIKE` ignores the case of ASCII letters, nulls sort first).

use super::Postgres;
use crate::error::ApiError;
use crate::search::{Criteria, Kind, Op, Scalar};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

type Value = Box<dyn ToSql + Sync + Send>;

/// The statement's parameters; `$n` placeholders are numbered after those already bound.
#[derive(Default)]
pub(super) struct Bound(Vec<Value>);

impl Bound {
    pub(super) fn push(&mut self, value: Value) -> String {
        self.0.push(value);
        format!("${}", self.0.len())
    }

    fn scalar(&mut self, value: &Scalar) -> String {
        match value {
            Scalar::Null => "NULL".to_owned(),
            Scalar::Int(n) => self.push(Box::new(*n)),
            Scalar::Text(s) => self.push(Box::new(s.clone())),
            Scalar::Bool(b) => self.push(Box::new(*b)),
        }
    }

    pub(super) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect()
    }
}

/// ` AND …` for each condition, binding its values.
fn conditions(criteria: &Criteria, params: &mut Bound) -> String {
    let mut sql = String::new();
    for c in &criteria.conditions {
        let condition = match c.field.kind {
            Kind::Followed => followed(&c.op, params),
            kind => compare(c.field.column, kind, &c.op, params),
        };
        sql.push_str(" AND ");
        sql.push_str(&condition);
    }
    sql
}

/// `col` compared as `op` says.
fn compare(col: &str, kind: Kind, op: &Op, params: &mut Bound) -> String {
    match op {
        Op::Is(Scalar::Null) => format!("{col} IS NULL"),
        Op::IsNot(Scalar::Null) => format!("{col} IS NOT NULL"),
        Op::Is(v) => format!("{col} IS NOT DISTINCT FROM {}", params.scalar(v)),
        Op::IsNot(v) => format!("{col} IS DISTINCT FROM {}", params.scalar(v)),
        Op::GreaterThan(v) => format!("{col} > {}", params.scalar(v)),
        Op::LessThan(v) => format!("{col} < {}", params.scalar(v)),
        Op::In(values) => {
            let marks: Vec<_> = values.iter().map(|v| params.scalar(v)).collect();
            format!("{col} IN ({})", marks.join(", "))
        }
        Op::StartsWith(text) => like(params, kind, col, format!("{}%", escape(text))),
        Op::EndsWith(text) => like(params, kind, col, format!("%{}", escape(text))),
        Op::Contains(text) => like(params, kind, col, format!("%{}%", escape(text))),
    }
}

/// A condition on the events a webhook follows ([`Kind::Followed`]), through the rows of
/// `webhook_events`, where '*' stands for every event (as SQLite's `filter.rs` does it).
fn followed(op: &Op, params: &mut Bound) -> String {
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

/// ILIKE on a "C"-collated column folds ASCII letters only, as SQLite's LIKE does; a number
/// is matched by its digits, a boolean as 1 or 0.
fn like(params: &mut Bound, kind: Kind, col: &str, pattern: String) -> String {
    let mark = params.push(Box::new(pattern));
    match kind {
        Kind::Text | Kind::Followed => format!("{col} ILIKE {mark} ESCAPE '\\'"),
        Kind::Int => format!("CAST({col} AS TEXT) ILIKE {mark} ESCAPE '\\'"),
        Kind::Bool => format!("CAST({col}::int AS TEXT) ILIKE {mark} ESCAPE '\\'"),
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
        Some((field, true)) => format!("{} DESC NULLS LAST, id DESC", field.column),
        Some((field, false)) => format!("{} ASC NULLS FIRST, id ASC", field.column),
    }
}

/// A page of a search: `SELECT {columns} {from} …` where `from` is `FROM t WHERE account_id = $1`
/// and any conditions of the table's own. Limit 0 means no limit. Criteria make statements
/// of countless shapes, so these are not kept prepared (the cache would only grow).
pub(super) async fn search(
    c: &impl GenericClient,
    columns: &str,
    from: &str,
    account_id: i64,
    criteria: &Criteria,
    (limit, offset): (i64, i64),
) -> Result<Vec<Row>, ApiError> {
    let mut params = Bound::default();
    params.push(Box::new(account_id));
    let and = conditions(criteria, &mut params);
    let limit = match limit {
        0 => None,
        n => Some(n),
    };
    let sql = format!(
        "SELECT {columns} {from}{and} ORDER BY {} LIMIT {} OFFSET {}",
        order_by(criteria),
        params.push(Box::new(limit)),
        params.push(Box::new(offset)),
    );
    Ok(c.query(sql.as_str(), &params.refs()).await?)
}

/// Runs `head`, the criteria's conditions and `tail` as one statement: an UPDATE whose `head`
/// ends with conditions of its own (numbered `$1…` from `leading`), and whose `tail` may end a
/// subquery that picks the rows. Returns how many rows it changed.
pub(super) async fn update(
    c: &impl GenericClient,
    (head, tail): (&str, &str),
    leading: Bound,
    criteria: &Criteria,
) -> Result<u64, ApiError> {
    let mut params = leading;
    let and = conditions(criteria, &mut params);
    let sql = format!("{head}{and}{tail}");
    Ok(c.execute(sql.as_str(), &params.refs()).await?)
}

impl Postgres {
    /// How many rows a search would find (see [`search`]).
    pub(super) async fn count(
        &self,
        from: &'static str,
        account_id: i64,
        criteria: Criteria,
    ) -> Result<i64, ApiError> {
        let mut params = Bound::default();
        params.push(Box::new(account_id));
        let and = conditions(&criteria, &mut params);
        let sql = format!("SELECT count(*) {from}{and}");
        let client = self.client().await?;
        Ok(client
            .query_one(sql.as_str(), &params.refs())
            .await?
            .try_get(0)?)
    }
}
