//! Reads whole tables out, for `hookrpc migrate` (store/copy.rs).

use super::Sqlite;
use crate::error::ApiError;
use crate::store::copy::{Chunk, CHUNK_ROWS};
use rusqlite::types::ValueRef;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

impl Sqlite {
    /// Sends every row of `table` (as column → value) in chunks, in primary-key order; ends
    /// the channel when done or at the first error (which it sends).
    pub async fn export(&self, table: &'static str, chunks: mpsc::Sender<Result<Chunk, ApiError>>) {
        let errors = chunks.clone();
        let done = self
            .read(move |conn| {
                let mut stmt = conn.prepare(&format!("SELECT * FROM {table}"))?;
                let names: Vec<String> =
                    stmt.column_names().iter().map(|n| n.to_string()).collect();
                let mut rows = stmt.query([])?;
                let mut chunk = Vec::with_capacity(CHUNK_ROWS);
                while let Some(row) = rows.next()? {
                    let mut record = Map::new();
                    for (i, name) in names.iter().enumerate() {
                        record.insert(name.clone(), value(row.get_ref(i)?)?);
                    }
                    chunk.push(Value::Object(record));
                    if chunk.len() == CHUNK_ROWS {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
                        if chunks.blocking_send(Ok(full)).is_err() {
                            return Ok(()); // the importer stopped: it says why
                        }
                    }
                }
                if !chunk.is_empty() {
                    let _ = chunks.blocking_send(Ok(chunk));
                }
                Ok(())
            })
            .await;
        if let Err(e) = done {
            let _ = errors.send(Err(e)).await;
        }
    }
}

impl Sqlite {
    /// How many rows `table` holds.
    pub async fn count_rows(&self, table: &'static str) -> Result<i64, ApiError> {
        self.read(move |conn| {
            Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
        })
        .await
    }
}

fn value(v: ValueRef) -> Result<Value, ApiError> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::from(n),
        ValueRef::Real(x) => Value::from(x),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(_) => return Err(ApiError::Internal("a blob in a hookrpc table".into())),
    })
}
