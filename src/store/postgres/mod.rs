//! The PostgreSQL backend, for a cluster: any number of nodes share one database. Each call is
//! one transaction on a pooled connection, answered after its commit (synchronous_commit is
//! on: an acknowledgement survives a crash of the database server too); PostgreSQL's own
//! group commit batches the concurrent ones. Work is handed between nodes through the
//! database alone: claims lease rows with `FOR NO KEY UPDATE SKIP LOCKED`, and a commit that
//! queues work sends a `NOTIFY` that every node's engine `LISTEN`s for.
//!
//! Every row lock is `FOR NO KEY UPDATE`, never `FOR UPDATE`: hookrpc never changes a key, and
//! `FOR UPDATE` also conflicts with the `KEY SHARE` lock that each insert of a referencing row
//! takes (a foreign key check), so recording an attempt would wait for every `addEvent`
//! queueing deliveries for the same webhook, and the other way round.

mod deliveries;
mod events;
mod filter;
mod import;
mod keys;
mod migrate;
mod queue;
mod retention;
mod secrets;
mod stats;
mod webhooks;

use super::Waker;
use crate::error::ApiError;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Config, NoTls, Row};

/// The channel on which a commit that queued work tells every node's engine.
const WORK_CHANNEL: &str = "hookrpc_work";
/// Connections per node: API calls and the engine share them.
const POOL_SIZE: usize = 16;
/// How long `/health` waits for its probe write.
const PROBE_WAIT: Duration = Duration::from_secs(2);
/// After the listening connection is lost, how long before connecting again.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// Rung by this node's commits that queue work, and by every other node's (through the
    /// listener).
    waker: Waker,
}

/// Bound parameters as tokio-postgres takes them.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Postgres {
    /// Connects, applies migrations (once among all nodes) and, for a server (`listen`),
    /// starts listening for other nodes' work.
    pub async fn open(url: &str, listen: bool) -> Result<Postgres, ApiError> {
        let mut config: Config = url
            .parse()
            .map_err(|e| ApiError::Internal(format!("postgres: bad database url: {e}")))?;
        // Whatever the server's default: a reply means the commit is on the server's disk.
        let options = config.get_options().unwrap_or("").to_owned();
        config.options(format!("{options} -c synchronous_commit=on").trim());
        if config.get_application_name().is_none() {
            config.application_name("hookrpc");
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| ApiError::Internal(format!("postgres: pool: {e}")))?;
        migrate::apply(&mut pool.get().await?).await?;
        let waker = Waker::default();
        if listen {
            tokio::spawn(listen_for_work(config, waker.clone()));
        }
        Ok(Postgres { pool, waker })
    }

    /// The engine's wake-ups: this node's commits that queue work, and other nodes'.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    async fn client(&self) -> Result<Object, ApiError> {
        Ok(self.pool.get().await?)
    }

    /// For `/health`: a real write (the probe row changes, so its commit must reach the WAL),
    /// waited for briefly: a database that is down or full answers 503, not a hang.
    pub async fn health(&self) -> Result<(), String> {
        let probe = async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            exec(&tx, "UPDATE write_probe SET probes = probes + 1", &[]).await?;
            tx.commit().await?;
            Ok::<_, ApiError>(())
        };
        match tokio::time::timeout(PROBE_WAIT, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("database refuses writes: {}", cause(e))),
            Err(_) => Err(format!(
                "database took no write within {} ms",
                PROBE_WAIT.as_millis()
            )),
        }
    }
}

/// Tells every node (this one included) that work was queued; sent inside the transaction
/// that queued it, so it is delivered at its commit, and only if it commits.
async fn notify_work(c: &impl GenericClient) -> Result<(), ApiError> {
    exec(c, &format!("NOTIFY {WORK_CHANNEL}"), &[]).await?;
    Ok(())
}

/// Keeps a connection that `LISTEN`s for work and rings `waker` on each notification. Once
/// (re)connected it rings once: work queued while nobody listened is not lost on anyone.
async fn listen_for_work(config: Config, waker: Waker) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let statement = format!("LISTEN {WORK_CHANNEL}");
                let listen = client.batch_execute(&statement);
                let messages = async {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => waker.wake(),
                            Ok(_) => {}
                            Err(e) => return e.to_string(),
                        }
                    }
                    "connection closed".to_owned()
                };
                let listening = async {
                    match listen.await {
                        Ok(()) => waker.wake(),
                        Err(e) => tracing::warn!(error = %e, "postgres: LISTEN failed"),
                    }
                    std::future::pending::<()>().await
                };
                let why = tokio::select! {
                    why = messages => why,
                    _ = listening => unreachable!(),
                };
                tracing::warn!(error = %why, "postgres: lost the connection that listens for work");
            }
            Err(e) => tracing::warn!(error = %e, "postgres: cannot connect to listen for work"),
        }
        tokio::time::sleep(RELISTEN_AFTER).await;
    }
}

async fn rows(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<Vec<Row>, ApiError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

async fn row_opt(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, ApiError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

async fn row(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<Row, ApiError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_one(&stmt, params).await?)
}

async fn exec(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<u64, ApiError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

/// How often a transaction PostgreSQL aborted to break a deadlock is run again.
const DEADLOCK_RETRIES: usize = 3;

/// Runs `transaction` again when PostgreSQL aborted it to break a deadlock (it rolled back,
/// so running it again is safe): a rare cycle among concurrent outcomes of one webhook must
/// cost a retry, not an outcome.
async fn retry_on_deadlock<T, F, Fut>(mut transaction: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut tries = 1;
    loop {
        match transaction().await {
            Err(e) if is_deadlock(&e) && tries < DEADLOCK_RETRIES => {
                tracing::debug!(error = %e, "postgres: deadlock broken, running the transaction again");
                tries += 1;
            }
            done => return done,
        }
    }
}

/// True for the error PostgreSQL gives the transaction it aborts to break a deadlock (as the
/// `From` below words it).
fn is_deadlock(e: &ApiError) -> bool {
    let code = tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED.code();
    matches!(e, ApiError::Internal(cause) if cause.starts_with(&format!("postgres: {code}:")))
}

/// The cause an internal error carries, without the client-facing prefix.
fn cause(e: ApiError) -> String {
    match e {
        ApiError::Internal(cause) => cause,
        other => other.to_string(),
    }
}

// A driver's errors become internal errors here, inside the store: no caller sees a driver
// type, and the words never reach a client (`ApiError::Internal` is logged, not sent).
impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Self::Internal(format!("postgres: {}: {}", db.code().code(), db.message())),
            None => Self::Internal(format!("postgres: {e}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Internal(format!("postgres: {e}"))
    }
}
