//! The SQLite backend. Writes go to one writer thread that commits whatever is queued in one
//! transaction (group commit: each caller is answered only after its write is on disk, and
//! throughput comes from batching, not from weaker durability). Each write runs in its own
//! savepoint, so a failing call never leaves a partial row and never spoils its neighbours.
//! Reads use a small pool of read-only connections.

mod deliveries;
mod events;
mod export;
mod filter;
mod keys;
mod migrate;
mod queue;
mod record;
mod retention;
mod secrets;
mod stats;
mod webhooks;

use super::Waker;
use crate::error::ApiError;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

/// How many queued writes one transaction may take at most.
const MAX_GROUP: usize = 512;

/// SQLite checkpoints inside the commit that leaves the WAL past this many pages. Four times
/// its default means a quarter of the checkpoints: hot pages are copied back less often
/// (addWebhook under load: 12k -> 18k/s in one A/B run, BENCHMARKS.md), for a WAL of up to
/// ~16 MiB.
const CHECKPOINT_PAGES: u32 = 4000;
/// After a checkpoint lets the WAL start over, its file is cut back to this size.
const JOURNAL_SIZE_LIMIT: u64 = 64 << 20;
/// Below this much free space on the database's filesystem, the writer checkpoints after
/// every commit (see [`SpaceWatch`]), until there is room for a WAL of the size limit again
/// on top (cutting the WAL back frees space by itself: without that margin the two settings
/// would take turns).
const LOW_SPACE: u64 = 64 << 20;
const SPACE_AGAIN: u64 = LOW_SPACE + JOURNAL_SIZE_LIMIT;

type Finish = Box<dyn FnOnce(Result<(), ApiError>) + Send>;
/// A queued write. Given the connection, it runs in the group's transaction; given `None`
/// (there is no transaction: BEGIN failed) it does nothing, and its `Finish` carries the error.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Finish + Send>;

#[derive(Clone)]
pub struct Sqlite {
    writer: mpsc::Sender<Job>,
    readers: Arc<ReadPool>,
    /// For point lookups by key: run on the calling thread, which costs a few microseconds,
    /// instead of a hop to the blocking pool, which costs more than the lookup itself.
    lookups: Arc<[Mutex<Connection>]>,
    /// Wakes the delivery engine after a commit that queued work for it.
    waker: Waker,
    /// Why the last write that failed failed, until a probe write from `health` succeeds.
    writes: Arc<WriteHealth>,
    /// The database file, for work that cannot run in the writer's transactions (VACUUM).
    path: Arc<Path>,
}

struct ReadPool {
    connections: Mutex<Vec<Connection>>,
    available: Semaphore,
}

impl Sqlite {
    /// Opens (creating if needed) the database, applies migrations and starts the writer.
    pub fn open(path: &Path, reader_count: usize) -> Result<Sqlite, ApiError> {
        let mut conn = Connection::open(path)?;
        // 4 MiB: with 8, `bench memory` (100k webhooks, 1M pending) went past its 50 MB.
        configure(&conn, 4096)?;
        conn.execute_batch("PRAGMA journal_mode = WAL")?;
        let mut space = SpaceWatch::new(path);
        space.set_checkpoints(&conn, false)?;
        migrate::apply(&mut conn)?;

        let readers = (0..reader_count.max(1))
            .map(|_| open_reader(path))
            .collect::<Result<Vec<_>, _>>()?;
        let lookups = (0..2)
            .map(|_| open_reader(path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::channel::<Job>();
        let writes = Arc::new(WriteHealth::default());
        let health = writes.clone();
        std::thread::Builder::new()
            .name("hookrpc-writer".into())
            .spawn(move || writer_loop(conn, rx, &health, space))
            .map_err(|e| ApiError::Internal(format!("spawn writer: {e}")))?;
        Ok(Sqlite {
            path: path.into(),
            waker: Waker::default(),
            lookups: lookups.into(),
            writes,
            writer: tx,
            readers: Arc::new(ReadPool {
                available: Semaphore::new(readers.len()),
                connections: Mutex::new(readers),
            }),
        })
    }

    /// The engine's wake-ups: every commit that queues work for it rings this.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Runs `f` on the writer connection inside a savepoint; resolves after the commit.
    async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        self.write_then(f, |_| {}).await
    }

    /// [`Store::write`], and `then` runs on the writer thread with the outcome, before any
    /// later group is run.
    async fn write_then<T, F>(
        &self,
        f: F,
        then: impl FnOnce(&Result<T, ApiError>) + Send + 'static,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => in_savepoint(conn, f),
                None => Err(ApiError::Internal("not run".into())),
            };
            Box::new(move |committed| {
                let outcome = committed.and(result);
                then(&outcome);
                let _ = tx.send(outcome);
            })
        });
        self.writer
            .send(job)
            .map_err(|_| ApiError::Internal("writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| ApiError::Internal("writer dropped a job".into()))?
    }

    /// Runs `f` on a read-only connection off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let pool = self.readers.clone();
        let _permit = pool
            .available
            .acquire()
            .await
            .map_err(|_| ApiError::Internal("reader pool closed".into()))?;
        let pool = pool.clone(); // the permit above borrows the other handle
        tokio::task::spawn_blocking(move || {
            let conn = lock(&pool.connections)
                .pop()
                .expect("a permit guarantees a connection");
            let result = f(&conn);
            lock(&pool.connections).push(conn);
            result
        })
        .await
        .map_err(|e| ApiError::Internal(format!("reader task: {e}")))?
    }

    /// Runs a point lookup (an indexed query returning at most a row or two) right here.
    /// Anything that may scan goes through [`Store::read`].
    fn lookup<T>(&self, f: impl FnOnce(&Connection) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let conn = self
            .lookups
            .iter()
            .find_map(|m| m.try_lock().ok())
            .unwrap_or_else(|| lock(&self.lookups[0]));
        f(&conn)
    }

    /// For `/health`: `Ok` while the database answers and takes writes, else why not.
    /// Cheap while all is well: the writer notes each failed write and each commit that really
    /// wrote, so while writes go through, no write (and no fsync) is needed to know. After a
    /// failure, or when nothing has been written for a while (an idle server whose disk filled
    /// up meanwhile would otherwise look healthy), a real write is tried: it changes a row, so
    /// its commit must reach the WAL. (A commit that changes nothing writes nothing and
    /// succeeds on a full disk; so does an UPDATE to the same value, SQLite skips it.) The
    /// probe's success clears the failure, on the writer thread, so a failure of a later group
    /// is never lost to it. It is waited for briefly: a database locked by another process
    /// would otherwise hold the answer for the whole busy timeout.
    pub async fn health(&self) -> Result<(), String> {
        if self.writes.in_doubt() {
            let writes = self.writes.clone();
            let probe = self.write_then(
                |c| Ok(exec(c, "UPDATE write_probe SET probes = probes + 1")?),
                move |outcome| {
                    if outcome.is_ok() {
                        *lock(&writes.failure) = None;
                    }
                },
            );
            match tokio::time::timeout(PROBE_WAIT, probe).await {
                Ok(done) => done.map_err(|e| format!("database refuses writes: {}", cause(e)))?,
                Err(_) => {
                    let waited = PROBE_WAIT.as_millis();
                    return Err(match lock(&self.writes.failure).clone() {
                        Some(why) => format!(
                            "database refuses writes: {why} (a new write waited {waited} ms)"
                        ),
                        None => format!("database took no write within {waited} ms"),
                    });
                }
            }
        }
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
            .map_err(|e| format!("database does not answer: {}", cause(e)))
    }
}

/// What the writer has seen lately, for `/health`.
#[derive(Default)]
struct WriteHealth {
    /// Why the last write that failed failed, until a probe write succeeds.
    failure: Mutex<Option<String>>,
    /// When a commit that changed rows last succeeded.
    proven: Mutex<Option<Instant>>,
}

/// A write proven this recently is taken as proof that writes work.
const PROOF_AGE: Duration = Duration::from_secs(1);
/// How long `/health` waits for its probe write.
const PROBE_WAIT: Duration = Duration::from_secs(2);

impl WriteHealth {
    fn in_doubt(&self) -> bool {
        lock(&self.failure).is_some()
            || lock(&self.proven).is_none_or(|at| at.elapsed() > PROOF_AGE)
    }

    fn failed(&self, why: &str) {
        *lock(&self.failure) = Some(why.to_owned());
    }
}

/// The cause an internal error carries, without the client-facing prefix.
fn cause(e: ApiError) -> String {
    match e {
        ApiError::Internal(cause) => cause,
        other => other.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `cache_kib` bounds the page cache: the writer gets more, each reader a little, which keeps
/// the resident size small however large the database grows.
fn configure(conn: &Connection, cache_kib: u32) -> Result<(), ApiError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Without the query planner stability guarantee, a statement whose plan could depend on a
    // bound value (any `LIMIT ?`: the claim, every search) is compiled again on each run.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -{cache_kib};"
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, ApiError> {
    let conn = Connection::open_with_flags(
        PathBuf::from(path),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    configure(&conn, 1024)?;
    Ok(conn)
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    exec(conn, "SAVEPOINT call")?;
    let result = f(conn);
    if result.is_err() {
        exec(conn, "ROLLBACK TO call")?;
    }
    exec(conn, "RELEASE call")?;
    result
}

/// Runs a statement that takes no parameters, compiled once per connection (unlike
/// `execute_batch`, which compiles each time: more work than a small write itself).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// A job that panics must not take the writer thread (and every later write) with it: its
/// savepoint is rolled back and its caller, whose reply channel unwinding dropped, gets an
/// internal error.
fn run_job(conn: &Connection, job: Job) -> Finish {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(conn)))) {
        Ok(finish) => finish,
        Err(_) => {
            tracing::error!("a write job panicked; its changes are rolled back");
            let _ = exec(conn, "ROLLBACK TO call").and_then(|()| exec(conn, "RELEASE call"));
            Box::new(|_| {})
        }
    }
}

fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<Job>,
    health: &WriteHealth,
    mut space: SpaceWatch,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        space.check(&conn);
        commit_group(&conn, jobs, health);
    }
}

/// Lets a server stopped by a full disk recover once a little space is free.
///
/// What a full disk showed (a tmpfs holding the database, events published until writes
/// failed with SQLITE_FULL): SQLite can neither reuse nor shrink the WAL until a checkpoint
/// has copied every page in it to the database file, and that file must grow for the pages
/// it does not have yet: up to a checkpoint interval's worth (4000 pages, 16 MiB), more when
/// the WAL outgrew it. A checkpoint that fails keeps the space it took in the database file
/// but none of its progress. Freeing 1 MB at a time on a 60 MiB disk (WAL 16 MiB, database
/// 45 MiB), each step let one small commit into the WAL, and the checkpoint inside that
/// commit took the rest and failed again: claims (writes), so delivery, and most other writes
/// stalled until 7 MB more were free, the pages the database file still lacked (on a 20 MiB
/// disk: 8 MB; freeing 2 MB did nothing). So while free space is low the writer checkpoints
/// after every commit, which keeps that backlog to about one group (the WAL at the failure:
/// 0.3 MiB; 1 MB freed was enough), and sets journal_size_limit to 0, which gives the WAL's
/// unused tail back for the database to grow into. Commits then cost a checkpoint each, but
/// only near a full disk; a statvfs per group costs a microsecond beside its fsync. Tested by
/// `after_a_full_disk_a_little_free_space_is_enough_to_recover` in tests/faults.rs.
struct SpaceWatch {
    /// The database file (statvfs follows a symbolic link to the filesystem that holds it,
    /// as SQLite does when it puts the WAL beside it).
    db: std::ffi::CString,
    low: bool,
}

impl SpaceWatch {
    fn new(db: &Path) -> SpaceWatch {
        use std::os::unix::ffi::OsStrExt;
        SpaceWatch {
            db: std::ffi::CString::new(db.as_os_str().as_bytes()).unwrap_or_default(),
            low: false,
        }
    }

    fn set_checkpoints(&mut self, conn: &Connection, low: bool) -> rusqlite::Result<()> {
        let (pages, limit) = match low {
            true => (1, 0),
            false => (CHECKPOINT_PAGES, JOURNAL_SIZE_LIMIT),
        };
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {pages}; PRAGMA journal_size_limit = {limit};"
        ))?;
        self.low = low;
        Ok(())
    }

    fn check(&mut self, conn: &Connection) {
        let Some(free) = free_bytes(&self.db) else {
            return;
        };
        let low = match self.low {
            false => free < LOW_SPACE,
            true => free < SPACE_AGAIN,
        };
        if low == self.low {
            return;
        }
        match self.set_checkpoints(conn, low) {
            Ok(()) if low => tracing::warn!(
                free_bytes = free,
                "little free space for the database: checkpointing after every commit"
            ),
            Ok(()) => tracing::info!(free_bytes = free, "free space again: usual checkpoints"),
            Err(e) => tracing::warn!(error = %e, "cannot change checkpoint settings"),
        }
    }
}

/// Bytes free to an unprivileged user on the filesystem holding `path`.
fn free_bytes(path: &std::ffi::CStr) -> Option<u64> {
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stat` is written by statvfs before it is read.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// One transaction for the whole group; every caller hears the commit's outcome. A failure
/// is noted in `health` before any caller hears of it, and so is a commit that wrote.
fn commit_group(conn: &Connection, jobs: Vec<Job>, health: &WriteHealth) {
    let changes_before = conn.total_changes();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        // No transaction (e.g. another process holds the lock past the busy timeout): every
        // caller hears why, and the next group tries again.
        let why = format!("sqlite: begin: {e}");
        health.failed(&why);
        for job in jobs {
            job(None)(Err(ApiError::Internal(why.clone())));
        }
        return;
    }
    // A statement that fails on I/O (a full disk, say) can make SQLite roll the whole
    // transaction back. A job run after that would open and commit a transaction of its own,
    // while its caller is told that the group failed: such jobs are not run, and the group
    // fails as a whole.
    let finishes: Vec<Finish> = jobs
        .into_iter()
        .map(|job| match conn.is_autocommit() {
            false => run_job(conn, job),
            true => job(None),
        })
        .collect();
    let committed = match conn.is_autocommit() {
        true => Err("sqlite: the transaction was rolled back by an error inside it".to_owned()),
        false => exec(conn, "COMMIT").map_err(|e| {
            let _ = exec(conn, "ROLLBACK");
            format!("sqlite: commit: {e}")
        }),
    };
    match &committed {
        Err(why) => health.failed(why),
        // Rows changed, so the commit reached the WAL: writes work.
        Ok(()) if conn.total_changes() != changes_before => {
            *lock(&health.proven) = Some(Instant::now())
        }
        Ok(()) => {}
    }
    for finish in finishes {
        finish(committed.clone().map_err(ApiError::Internal));
    }
}

// A driver's errors become internal errors here, inside the store: no caller sees a driver
// type, and the words never reach a client (`ApiError::Internal` is logged, not sent).
impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Internal(format!("sqlite: {e}"))
    }
}

impl From<rusqlite::types::FromSqlError> for ApiError {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        Self::Internal(format!("sqlite: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite ending the group's transaction under a job (as it does after some I/O errors) fails
    /// the whole group: no later job of the group commits on its own behind its caller's back.
    #[tokio::test]
    async fn a_group_whose_transaction_ended_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("t.db"), 1).unwrap();
        let insert = |name: &'static str| {
            move |c: &Connection| {
                c.execute(
                    "INSERT INTO accounts (name, creation_time) VALUES (?1, 0)",
                    [name],
                )?;
                Ok(())
            }
        };
        // The first job holds the writer while the other two queue up behind it, so those two
        // share a group (with it, or with each other).
        let (first, ended, after) = tokio::join!(
            store.write(|_| {
                std::thread::sleep(std::time::Duration::from_millis(200));
                Ok(())
            }),
            store.write(|c| Ok(exec(c, "ROLLBACK")?)),
            store.write(insert("after")),
        );
        let _ = first;
        assert!(ended.is_err());
        assert!(after.is_err(), "its group failed, so its caller hears so");
        let stored: i64 = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM accounts WHERE name = 'after'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(
            stored, 0,
            "a write reported as failed is not in the database"
        );
    }
}
