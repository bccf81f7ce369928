//! The PostgreSQL backend, for a cluster: any number of nodes share one database. Each call is
//! one transaction on a pooled connection, answered after its commit (synchronous_commit is
//! on: an acknowledgement survives a crash of the database server too). Calls that publish
//! without idempotency keys, and the engine's records, that arrive while earlier ones are
//! being written are written together (`gather.rs`). The engine's own bookkeeping (claims,
//! leases, recorded attempts) runs on connections of its own whose commits do not wait for the
//! log to reach the disk: such a commit lost in a crash of the database server only means a
//! delivery is sent again, as after a crash of a node (delivery is at least once), and the
//! engine does not wait a flush between claiming and sending. Work is handed between nodes
//! through the database alone: claims lease rows with `FOR NO KEY UPDATE SKIP LOCKED`, and
//! commits that queue work are followed by a `NOTIFY` that every node's engine `LISTEN`s for.
//!
//! Row locks on the delivery path are `FOR NO KEY UPDATE`, not `FOR UPDATE`: hookrpc never
//! changes a key, and `FOR UPDATE` also conflicts with the `KEY SHARE` lock that each insert of
//! a row referencing the locked one takes (a foreign key check: webhooks and keys name their
//! account, `webhook_events` its webhook). Retention's `FOR UPDATE` is the exception: it is
//! meant to hold off every other writer of the deliveries it removes.

mod deliveries;
mod events;
mod filter;
mod gather;
mod import;
mod intake;
mod keys;
mod migrate;
mod queue;
mod record;
mod recorder;
mod retention;
mod secrets;
mod stats;
mod webhooks;

use super::{Changed, Waker};
use crate::error::ApiError;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Config, NoTls, Row};

/// The channel on which a commit that queued work tells every node's engine.
const WORK_CHANNEL: &str = "hookrpc_work";
/// The channel on which a commit that changed a webhook tells every node's engine which one
/// (see [`announce_change`]).
const CHANGES_CHANNEL: &str = "hookrpc_webhook_changes";
/// Connections per node for API calls.
const POOL_SIZE: usize = 12;
/// Connections per node for the engine's records (a node that serves the API only opens none),
/// beside the one its claims have to themselves: behind the records of every batch in flight,
/// the next claim would wait for the last of them, and the engine would send in fits.
const ENGINE_POOL_SIZE: usize = 8;
/// The engine's connections: their commits do not wait for the log's flush (see the module's
/// documentation), and they never scan a table whole. Every statement of a claim or a record
/// reaches its rows by key, through an index; but a connection keeps the plan it made for a
/// statement after a few runs, and one made in a new deployment's first seconds, while
/// `deliveries` was nearly empty, scanned it whole on every record for as long as the
/// connection lived (until an automatic `ANALYZE` replanned it): 20 million rows read in the
/// first 8 s of `bench single`. And they plan a statement once: for a lookup of webhooks by an
/// array of ids, a plan made for the ids at hand always looked cheaper than one for any ids,
/// so PostgreSQL planned it again at every run (0.1 ms each, for the hand-over's lookup and
/// the record's: 389 ms against 5,390 ms of execution in 10 s of `bench single`, BENCHMARKS.md
/// "Issue 10, seventh round"). With whole scans off, a plan for any parameters reaches rows
/// through the same indexes.
const ENGINE_SETTINGS: &str =
    "-c synchronous_commit=off -c enable_seqscan=off -c plan_cache_mode=force_generic_plan";
/// How long the database may leave a node unanswered at the network's level before the
/// connection is given up: connecting (the handshake too, for pooled connections), or data
/// sent and never acknowledged. A host gone in a failover, or a network that drops everything,
/// answers nothing, not even a refusal; left to the kernel, a call would wait two minutes for
/// a connection, or a quarter of an hour on a connection opened before.
const UNANSWERED: Duration = Duration::from_secs(10);
/// How long a connection may be silent before the kernel checks that the database's end is
/// still there, and how often it checks again: with nothing unacknowledged, this is the only
/// way to find a connection cut unseen. One waiting for an answer (its statement acknowledged,
/// then the network gone) is given up at the first check after a check went unanswered with
/// [`UNANSWERED`] passed: 15 s after the cut in the test, instead of two minutes. An idle
/// pooled or listening one is dropped before a call takes it. A connection that is alive
/// answers the checks at the kernel's level, however long its statement runs.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long `/health` waits for its probe write.
const PROBE_WAIT: Duration = Duration::from_secs(2);
/// After the listening connection is lost, how long before connecting again.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// The engine's connections: their commits do not wait for the log's flush.
    engine: Pool,
    /// The engine's connection for claims, of the same kind.
    claims: Pool,
    /// Rung by this node's commits that queue work, and by every other node's (through the
    /// listener).
    waker: Waker,
    /// Rung by this node's commits that queue work, for the other nodes: the listening
    /// connection then sends them one `NOTIFY`.
    outbox: Arc<Notify>,
    /// Gathers the engine's outcomes (see `recorder.rs`).
    recorder: recorder::Recorder,
    /// Gathers `addEvent` calls (see `intake.rs`).
    intake: intake::Intake,
}

/// A pool of at most `size` connections made with `config` (connections are opened as needed).
fn pool_of(config: Config, size: usize) -> Result<Pool, ApiError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(UNANSWERED))
        .build()
        .map_err(|e| ApiError::Internal(format!("postgres: pool: {e}")))
}

/// Sets what the url leaves to the kernel's (or tokio-postgres's) defaults: see
/// [`UNANSWERED`] and [`KEEPALIVE_IDLE`].
fn give_up_when_unanswered(config: &mut Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(UNANSWERED);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(UNANSWERED);
    }
    // tokio-postgres's default, two hours, when the url gives none.
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
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
        if config.get_application_name().is_none() {
            config.application_name("hookrpc");
        }
        give_up_when_unanswered(&mut config);
        // Whatever the server's default: a reply means the commit is on the server's disk; the
        // engine's bookkeeping does not wait for it (see ENGINE_SETTINGS).
        let given = config.get_options().unwrap_or("").to_owned();
        let mut engine_config = config.clone();
        config.options(format!("{given} -c synchronous_commit=on").trim());
        engine_config.options(format!("{given} {ENGINE_SETTINGS}").trim());
        let pool = pool_of(config.clone(), POOL_SIZE)?;
        let engine = pool_of(engine_config.clone(), ENGINE_POOL_SIZE)?;
        let claims = pool_of(engine_config, 1)?;
        migrate::apply(&mut pool.get().await?).await?;
        let waker = Waker::default();
        let outbox = Arc::new(Notify::new());
        if listen {
            tokio::spawn(keep_in_touch(config, waker.clone(), outbox.clone()));
            // On the API's connections: folding reads the whole log, a scan by design.
            tokio::spawn(stats::fold_forever(pool.clone()));
        }
        let (recorder, outcomes) = gather::inbox();
        let (intake, calls) = gather::inbox();
        let pg = Postgres {
            pool,
            engine,
            claims,
            waker,
            outbox,
            recorder,
            intake,
        };
        recorder::start(pg.clone(), outcomes);
        intake::start(pg.clone(), calls);
        Ok(pg)
    }

    /// The engine's wake-ups: this node's commits that queue work, and other nodes'.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    async fn client(&self) -> Result<Object, ApiError> {
        Ok(self.pool.get().await?)
    }

    /// A connection for the engine's bookkeeping (see the module's documentation).
    async fn engine_client(&self) -> Result<Object, ApiError> {
        Ok(self.engine.get().await?)
    }

    /// The engine's connection for claims (and for asking when the next retry is due).
    async fn claim_client(&self) -> Result<Object, ApiError> {
        Ok(self.claims.get().await?)
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

impl Postgres {
    /// After a commit that queued work: this node's engine is woken at once, the others by
    /// the next `NOTIFY` (see [`keep_in_touch`]).
    fn work_queued(&self) {
        self.waker.wake();
        self.outbox.notify_one();
    }
}

/// Tells every node's engine that webhook `id` changed, once this transaction commits (see
/// `Taker::webhooks_changed`; this node's engine is told before the call is answered, by the
/// store). Sent by the changing transaction itself, unlike work's notifications: no node hears
/// of a change that was rolled back, and changes are too rare for the notification queue's lock
/// at their commit to matter.
async fn announce_change(c: &impl GenericClient, id: i64) -> Result<(), ApiError> {
    let sql = format!("SELECT pg_notify('{CHANGES_CHANNEL}', $1::bigint::text)");
    exec(c, &sql, &[&id]).await?;
    Ok(())
}

/// The webhook change a notification tells of (`None`: it tells of work queued).
fn heard(channel: &str, payload: &str) -> Option<Changed> {
    match channel {
        CHANGES_CHANNEL => payload.parse().ok().map(|id| Changed::Webhooks(vec![id])),
        _ => None,
    }
}

/// Keeps one connection that `LISTEN`s for other nodes' work and webhook changes, ringing
/// `waker` on each of their notifications, and sends theirs: one `NOTIFY` whenever this node's
/// commits queued work since the last. Notifying of work from the committing transactions
/// themselves would serialise them: PostgreSQL holds a global lock on its notification queue through the commit of every
/// transaction that notifies, so their commits could not share a flush (`addEvent` from 32
/// callers: 2,000/s instead of 11,000/s). A node that dies between a commit and its `NOTIFY`
/// leaves work that its own engine had been woken for; the others find it at their next look
/// at the queue. Once (re)connected it rings once, and has the engine take any webhook as
/// changed: neither work queued nor a change made while nobody listened is lost on anyone.
async fn keep_in_touch(config: Config, waker: Waker, outbox: Arc<Notify>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let own_pid = std::sync::atomic::AtomicI32::new(0);
                let messages = async {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                match heard(n.channel(), n.payload()) {
                                    Some(changed) => {
                                        tracing::debug!(?changed, "heard of a change to webhooks");
                                        waker.webhooks_changed(changed)
                                    }
                                    None if n.process_id() != own_pid.load(Ordering::Relaxed) => {
                                        waker.wake()
                                    }
                                    None => {}
                                }
                            }
                            Ok(_) => {}
                            Err(e) => return e.to_string(),
                        }
                    }
                    "connection closed".to_owned()
                };
                let talking = async {
                    let listen = format!("LISTEN {WORK_CHANNEL}; LISTEN {CHANGES_CHANNEL}");
                    client.batch_execute(&listen).await?;
                    let pid: i32 = client
                        .query_one("SELECT pg_backend_pid()", &[])
                        .await?
                        .try_get(0)?;
                    own_pid.store(pid, Ordering::Relaxed);
                    waker.wake();
                    waker.webhooks_changed(Changed::Any);
                    let notify = format!("NOTIFY {WORK_CHANNEL}");
                    loop {
                        outbox.notified().await;
                        client.batch_execute(&notify).await?;
                    }
                };
                let why = tokio::select! {
                    why = messages => why,
                    Err::<(), tokio_postgres::Error>(e) = talking => e.to_string(),
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

/// How the `From` below words an error the server answered with, before its SQLSTATE; no
/// other error's words start so.
const SERVER_SAID: &str = "postgres said ";

/// The SQLSTATE of an error the server answered with; none for a lost connection or a pool
/// that gave none.
fn sqlstate(e: &ApiError) -> Option<&str> {
    let ApiError::Internal(cause) = e else {
        return None;
    };
    let code = cause.strip_prefix(SERVER_SAID)?.split(": ").next()?;
    (code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(code)
}

/// True for the error PostgreSQL gives the transaction it aborts to break a deadlock.
fn is_deadlock(e: &ApiError) -> bool {
    sqlstate(e) == Some(tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED.code())
}

/// True when the server refused the statement: it rolled back, and surely wrote nothing. (A
/// statement whose answer was lost with its connection may have committed; so may one
/// answered with a connection's failure (class 08) or a shutdown (57P01 administrator's,
/// 57P02 crash), which can end a session in the middle of its commit. A cancelled statement,
/// 57014, was rolled back: refused.)
fn refused(e: &ApiError) -> bool {
    sqlstate(e).is_some_and(|code| !code.starts_with("08") && !matches!(code, "57P01" | "57P02"))
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
            Some(db) => Self::Internal(format!(
                "{SERVER_SAID}{}: {}",
                db.code().code(),
                db.message()
            )),
            None => Self::Internal(format!("postgres: {e}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Internal(format!("postgres: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_servers_answer_has_a_sqlstate() {
        let said = |words: &str| ApiError::Internal(words.to_owned());
        let deadlock = said(&format!("{SERVER_SAID}40P01: deadlock detected"));
        assert!(is_deadlock(&deadlock) && refused(&deadlock));
        let unique = said(&format!("{SERVER_SAID}23505: duplicate key value"));
        assert!(refused(&unique) && !is_deadlock(&unique));
        let cancelled = said(&format!(
            "{SERVER_SAID}57014: canceling statement due to user request"
        ));
        assert!(refused(&cancelled), "a cancelled statement was rolled back");
        // A lost connection may have committed: never "refused", whatever its words; nor a
        // session ended by the server while it committed.
        for lost in [
            "postgres: error: connection closed",
            "postgres: 40P01: looks like one",
            &format!("{SERVER_SAID}57P01: terminating connection due to administrator command"),
            &format!("{SERVER_SAID}08006: connection failure"),
        ] {
            assert!(!refused(&said(lost)), "{lost}");
        }
        assert!(!refused(&ApiError::WebhookNotFound));
    }
}
