//! Test harness: the real `hookrpc` binary on an ephemeral port with a temporary database, a
//! real HTTP client, and a real receiver on 127.0.0.1. Tests talk to the server exactly as a
//! client would.
#![allow(dead_code)]

pub mod commit_cutter;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Flags for tests that deliver to the local receiver quickly.
pub const FAST: &[&str] = &[
    "--allow-private-targets",
    "--retry-schedule",
    "50ms,100ms,150ms",
    "--attempt-timeout",
    "2s",
];

/// The encryption key of test servers on PostgreSQL, where a deployment must give one (on
/// SQLite, a server makes its key file beside the database at first start). Base64 of
/// "hookrpc-test-encryption-key-0001".
pub const TEST_ENCRYPTION_KEY: &str = "aG9va3JwYy10ZXN0LWVuY3J5cHRpb24ta2V5LTAwMDE=";

/// `args` with the test key added for a PostgreSQL `db`, unless the test gives a key itself.
fn with_key_for(db: &str, mut args: Vec<String>) -> Vec<String> {
    let postgres = db.starts_with("postgres://") || db.starts_with("postgresql://");
    if postgres && !args.iter().any(|a| a == "--encryption-key") {
        args.extend([
            "--encryption-key".to_owned(),
            TEST_ENCRYPTION_KEY.to_owned(),
        ]);
    }
    args
}

/// Where a test server keeps its data: a SQLite file in the test's directory or, when
/// `HOOKRPC_TEST_DB` names a PostgreSQL server (`postgres://…/postgres`), a fresh database on
/// it, dropped when the last server using it is gone.
pub struct Database {
    /// What `--db` is given.
    pub arg: String,
    /// On PostgreSQL: the admin url and the database's name.
    postgres: Option<(String, String)>,
}

/// The PostgreSQL server the suite runs against, if any (`HOOKRPC_TEST_DB`).
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("HOOKRPC_TEST_DB")
        .ok()
        .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
}

/// True when the suite runs on PostgreSQL. A test of something only SQLite has (its files, its
/// disk-full handling) returns early then, saying so.
pub fn on_postgres(test: &str) -> bool {
    let yes = postgres_admin_url().is_some();
    if yes {
        eprintln!("{test}: skipped on PostgreSQL (a test of the SQLite file)");
    }
    yes
}

impl Database {
    fn fresh(dir: &Path) -> Database {
        match postgres_admin_url() {
            Some(admin) => Database::postgres(admin),
            None => Database::sqlite(dir),
        }
    }

    /// `hookrpc.db` in `dir`.
    pub fn sqlite(dir: &Path) -> Database {
        Database {
            arg: dir.join("hookrpc.db").to_string_lossy().into_owned(),
            postgres: None,
        }
    }

    /// A new, empty database on the PostgreSQL server at `admin`.
    pub fn postgres(admin: String) -> Database {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "hookrpc_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let (base, _) = admin
            .rsplit_once('/')
            .expect("a database url ends in /dbname");
        Database {
            arg: format!("{base}/{name}"),
            postgres: Some((admin, name)),
        }
    }

    /// On PostgreSQL: the server's address.
    pub fn server_addr(&self) -> SocketAddr {
        use std::net::ToSocketAddrs;
        let url = url::Url::parse(&self.arg).expect("a PostgreSQL url");
        let host = url.host_str().expect("a host, not a socket directory");
        let mut found = (host, url.port().unwrap_or(5432))
            .to_socket_addrs()
            .expect("the host's address");
        found.next().expect("an address")
    }

    /// The same PostgreSQL database reached through `addr` (a proxy); dropping it leaves the
    /// database alone.
    pub fn via(&self, addr: SocketAddr) -> Database {
        let mut url = url::Url::parse(&self.arg).expect("a PostgreSQL url");
        url.set_ip_host(addr.ip()).expect("an IP host");
        url.set_port(Some(addr.port())).expect("a port");
        Database {
            arg: url.to_string(),
            postgres: None,
        }
    }

    /// A fresh database of the kind the suite runs on (for tests that run several servers on
    /// one database).
    pub fn new_shared() -> Arc<(tempfile::TempDir, Database)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::fresh(dir.path());
        Arc::new((dir, db))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.postgres {
            psql(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// Runs one SQL statement with `psql`.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The default account's full-access key, printed at first start.
    pub key: String,
    pub dir: Arc<tempfile::TempDir>,
    pub database: Arc<Database>,
    args: Vec<String>,
    /// `RUST_LOG` of the server process.
    log_filter: String,
    client: reqwest::Client,
    next_id: AtomicU64,
    pub stderr_path: PathBuf,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hookrpc")
}

impl Server {
    /// A fresh server with an empty database.
    pub fn start(args: &[&str]) -> Server {
        Self::start_logging(args, "info")
    }

    /// A fresh server whose log level is `filter` (its `RUST_LOG`).
    pub fn start_logging(args: &[&str], filter: &str) -> Server {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let args = args.iter().map(|s| s.to_string()).collect();
        let database = Arc::new(Database::fresh(dir.path()));
        let server = Self::spawn(dir, database, args, filter.to_owned(), None);
        assert!(!server.key.is_empty(), "a key is printed on first start");
        server
    }

    /// `count` servers started at the same moment on one empty database (a cluster on
    /// PostgreSQL); they share the key that the one that created the account printed.
    pub fn start_together(count: usize, args: &[&str]) -> Vec<Server> {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let database = Arc::new(Database::fresh(dir.path()));
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut servers: Vec<Server> = std::thread::scope(|scope| {
            let started: Vec<_> = (0..count)
                .map(|_| {
                    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
                    let (database, args) = (database.clone(), args.clone());
                    scope.spawn(move || Self::spawn(dir, database, args, "info".into(), None))
                })
                .collect();
            started
                .into_iter()
                .map(|s| s.join().expect("start"))
                .collect()
        });
        let keys: Vec<String> = servers
            .iter()
            .map(|s| s.key.clone())
            .filter(|k| !k.is_empty())
            .collect();
        assert_eq!(keys.len(), 1, "exactly one node creates the first key");
        for server in &mut servers {
            server.key = keys[0].clone();
        }
        drop(dir);
        servers
    }

    /// A fresh server on SQLite, whatever database the suite runs on.
    pub fn start_on_sqlite(args: &[&str]) -> Server {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let database = Arc::new(Database::sqlite(dir.path()));
        let args = args.iter().map(|s| s.to_string()).collect();
        Self::spawn(dir, database, args, "info".to_owned(), None)
    }

    /// A server on `database`, which already holds `key`.
    pub fn start_on(database: Arc<Database>, key: &str, args: &[&str]) -> Server {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let args = args.iter().map(|s| s.to_string()).collect();
        Self::spawn(dir, database, args, "info".to_owned(), Some(key.to_owned()))
    }

    /// Another node on `other`'s database (a cluster on PostgreSQL), with its own flags.
    pub fn join(other: &Server, args: &[&str]) -> Server {
        let args = args.iter().map(|s| s.to_string()).collect();
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let key = Some(other.key.clone());
        Self::spawn(dir, other.database.clone(), args, "info".to_owned(), key)
    }

    /// A fresh server whose database is `hookrpc.db` in `dir`, which the test may have
    /// prepared (e.g. made that name a link to a file on another filesystem).
    pub fn start_in(dir: Arc<tempfile::TempDir>, args: &[&str]) -> Server {
        let args = args.iter().map(|s| s.to_string()).collect();
        let database = Arc::new(Database::fresh(dir.path()));
        Self::spawn(dir, database, args, "info".to_owned(), None)
    }

    /// The same database again (after `stop` or `kill9`), with the same flags.
    pub fn restart(&mut self) {
        self.stop();
        let again = Self::spawn(
            self.dir.clone(),
            self.database.clone(),
            self.args.clone(),
            self.log_filter.clone(),
            Some(self.key.clone()),
        );
        *self = again;
    }

    /// The same database again, with other flags.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// What this server was given as `--db`.
    pub fn db(&self) -> &str {
        &self.database.arg
    }

    /// The SQLite file (for tests that skip themselves on PostgreSQL).
    pub fn db_file(&self) -> PathBuf {
        self.dir.path().join("hookrpc.db")
    }

    fn spawn(
        dir: Arc<tempfile::TempDir>,
        database: Arc<Database>,
        args: Vec<String>,
        log_filter: String,
        key: Option<String>,
    ) -> Server {
        let db = database.arg.clone();
        let stderr_path = dir.path().join(format!(
            "stderr-{}.log",
            std::process::id() as u64 + rand_u64() % 1000
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = Command::new(bin())
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(&db)
            .args(with_key_for(&db, args.clone()))
            .env("RUST_LOG", &log_filter)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn hookrpc");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut key = key;
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!(
                        "hookrpc exited early: {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    )
                })
                .expect("read stdout");
            if let Some(k) = line.strip_prefix("created account default with full-access key: ") {
                key = Some(k.trim().to_owned());
            }
            if let Some(a) = line.strip_prefix("listening on ") {
                break a.trim().parse().expect("address");
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child: Some(child),
            addr,
            key: key.unwrap_or_default(),
            dir,
            database,
            args,
            log_filter,
            client: reqwest::Client::new(),
            next_id: AtomicU64::new(1),
            stderr_path,
        }
    }

    /// `hookrpc key add` against this server's database; returns the new key.
    pub fn add_key(&self, account: &str, access: &str) -> String {
        let out = Command::new(bin())
            .args([
                "key",
                "add",
                "--account",
                account,
                "--access",
                access,
                "--db",
            ])
            .arg(self.db())
            .output()
            .expect("key add");
        assert!(
            out.status.success(),
            "key add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// POSTs `body` as JSON to `path`; returns the status and the body text.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let r = self
            .client
            .post(format!("http://{}{}", self.addr, path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// POSTs `body` to `path` with `content_type` as its Content-Type header, or with none at
    /// all; returns the status, the reply's Content-Type ("" when absent) and the body text.
    pub async fn post_as(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, String, String) {
        let mut request = self
            .client
            .post(format!("http://{}{}", self.addr, path))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let r = request.send().await.expect("post");
        let status = r.status().as_u16();
        let reply_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned())
            .unwrap_or_default();
        (status, reply_type, r.text().await.unwrap_or_default())
    }

    /// A JSON-RPC 2.0 call; returns the whole reply object.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (status, text) = self.post_raw("/", body.to_string()).await;
        assert_eq!(status, 200, "{method}: HTTP {status}: {text}");
        let reply: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method}: bad JSON {e}: {text}"));
        assert_eq!(reply["id"], json!(id), "{method}: id echoed");
        reply
    }

    /// A call that must succeed; returns `result`.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        let reply = self.rpc(method, params).await;
        assert!(reply.get("error").is_none(), "{method} failed: {reply}");
        reply["result"].clone()
    }

    /// A call that must fail; returns (code, data).
    pub async fn err(&self, method: &str, params: Value) -> (i64, Value) {
        let reply = self.rpc(method, params).await;
        assert!(
            reply.get("result").is_none(),
            "{method} should fail: {reply}"
        );
        (
            reply["error"]["code"].as_i64().expect("code"),
            reply["error"].get("data").cloned().unwrap_or(Value::Null),
        )
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe_kill(child.id(), "TERM");
            let _ = child.wait();
        }
    }

    /// SIGKILL: the crash case.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The number the server's database answers to `sql` (a `SELECT count(*) …`), on either
    /// backend: for checking what is stored, beside what the API shows.
    pub fn sql_number(&self, sql: &str) -> i64 {
        match &self.database.postgres {
            Some(_) => psql(self.db(), sql).parse().expect("a number"),
            None => self
                .sqlite_connection()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
        }
    }

    /// Runs `sql` on the server's database (which the test may change behind its back).
    pub fn sql_execute(&self, sql: &str) {
        match &self.database.postgres {
            Some(_) => drop(psql(self.db(), sql)),
            None => self.sqlite_connection().execute_batch(sql).unwrap(),
        }
    }

    fn sqlite_connection(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db_file()).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

fn rand_u64() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// The ids in a result that is an array of them (addEvents).
pub fn ids(result: &Value) -> Vec<i64> {
    let ids = result.as_array().expect("an array of ids");
    ids.iter().map(|id| id.as_i64().expect("an id")).collect()
}

/// A minimal valid webhook_details for `url`.
pub fn webhook(url: &str) -> Value {
    json!({"object": "contact", "event": "subscribed", "url": url})
}

/// Polls `check` until it returns Some, for at most `limit`; panics with `what` otherwise.
/// This bounds a wait for something that must happen; it asserts nothing about speed.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Requests the receiver had in hand when this one arrived, itself included.
    pub in_flight: usize,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn items(&self) -> Vec<Value> {
        serde_json::from_slice::<Vec<Value>>(&self.body).expect("body is a JSON array")
    }
}

/// What the receiver answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// Status with extra headers.
    WithHeaders(u16, Vec<(&'static str, String)>),
    /// Sleep, then 200.
    Slow(Duration),
    /// Sleep, then this status.
    SlowStatus(Duration, u16),
    /// 200 after the first duration for every n-th request, after the second for the rest:
    /// a receiver whose time varies by itself, not with its load.
    Varying(Duration, Duration, usize),
    /// Drop the connection without answering.
    Hangup,
    /// Status with this body.
    Text(u16, String),
}

/// A real HTTP receiver on 127.0.0.1 that records every request and answers as told.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    reply: Arc<Mutex<Reply>>,
    in_flight: Arc<AtomicUsize>,
    /// When set, only this many requests are worked on at once; the rest queue.
    workers: Arc<Mutex<Option<Arc<tokio::sync::Semaphore>>>>,
}

/// Counts a request out of the receiver's hands however its answer ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            reply: Arc::new(Mutex::new(Reply::Status(200))),
            in_flight: Arc::default(),
            workers: Arc::default(),
        };
        let r = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let r = r.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let r = r.clone();
                        async move { r.answer(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    async fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, std::io::Error> {
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _out = InFlight(self.in_flight.clone());
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.received.lock().unwrap().push(Received {
            in_flight,
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body,
        });
        let workers = self.workers.lock().unwrap().clone();
        let _worker = match workers {
            Some(workers) => Some(workers.acquire_owned().await.expect("open")),
            None => None,
        };
        let reply = self.reply.lock().unwrap().clone();
        let (status, headers) = match reply {
            Reply::Status(s) => (s, vec![]),
            Reply::WithHeaders(s, h) => (s, h),
            Reply::Slow(d) => {
                tokio::time::sleep(d).await;
                (200, vec![])
            }
            Reply::SlowStatus(d, s) => {
                tokio::time::sleep(d).await;
                (s, vec![])
            }
            Reply::Varying(fast, slow, every) => {
                let n = self.received.lock().unwrap().len();
                tokio::time::sleep(if n.is_multiple_of(every) { fast } else { slow }).await;
                (200, vec![])
            }
            Reply::Hangup => return Err(std::io::Error::other("hang up")),
            Reply::Text(s, text) => {
                let response = hyper::Response::builder().status(s);
                return Ok(response.body(Full::new(Bytes::from(text))).unwrap());
            }
        };
        let mut response = hyper::Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(name, value);
        }
        Ok(response.body(Full::new(Bytes::from_static(b"ok"))).unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Only `count` requests are worked on at once (None: any number); the rest wait their
    /// turn inside the receiver, as they would at a small app server.
    pub fn set_workers(&self, count: Option<usize>) {
        *self.workers.lock().unwrap() = count.map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    }

    /// Lets `count` more requests be worked on at once, past what `set_workers` allowed
    /// (requests already waiting included): `set_workers(Some(0))` holds every request until
    /// let through.
    pub fn let_through(&self, count: usize) {
        if let Some(workers) = &*self.workers.lock().unwrap() {
            workers.add_permits(count);
        }
    }

    pub fn set_reply(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every item of every request received so far.
    pub fn items(&self) -> Vec<Value> {
        self.received().iter().flat_map(Received::items).collect()
    }
}

/// A TCP listener on 127.0.0.1 that answers every connection with `bytes` (not HTTP) and
/// closes it: the "receiver answers garbage" case.
pub async fn garbage_listener(bytes: &'static [u8]) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(bytes).await;
            });
        }
    });
    addr
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Server {
    /// Waits until delivery `id` has `status`; returns it with its attempts.
    pub async fn delivery_with_status(&self, id: &Value, status: &str) -> Value {
        eventually(
            &format!("delivery {id} to become {status}"),
            Duration::from_secs(60),
            || async {
                let d = self.ok("getDeliveryById", json!([self.key, id])).await;
                (d["status"] == status).then_some(d)
            },
        )
        .await
    }

    /// Three requests at the receiver at once: a webhook of contacts `created` to `receiver`,
    /// one event per request, and three events published to it together. Returns the
    /// webhook's id and the events' ids once the receiver has all three requests (in hand, if
    /// its reply is slow).
    pub async fn three_requests_out(&self, receiver: &Receiver) -> (Value, Value) {
        let details = json!({"object": "contact", "event": "created", "url": receiver.url("/"),
            "batch_size": 1});
        let webhook = self.ok("addWebhook", json!([self.key, details])).await;
        let event = json!({"object": "contact", "event": "created"});
        let events = self
            .ok("addEvents", json!([self.key, [event, event, event]]))
            .await;
        eventually("three requests out", Duration::from_secs(60), || async {
            (receiver.received().len() == 3).then_some(())
        })
        .await;
        (webhook, events)
    }

    /// Deliveries of `webhook` that an engine holds: leased (due when a lease taken in the
    /// last half minute ends; the default lease is 60 s).
    pub fn leased(&self, webhook: &Value) -> i64 {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let past = since_epoch.unwrap().as_millis() as i64 + 30_000;
        self.sql_number(&format!(
            "SELECT count(*) FROM deliveries WHERE webhook_id = {webhook} AND due_ms > {past}"
        ))
    }

    /// The only delivery of event `event_id`.
    pub async fn delivery_of(&self, event_id: &Value) -> Value {
        let found = self
            .ok(
                "searchDeliveries",
                json!([self.key, [["event_id", "exactly", event_id]]]),
            )
            .await;
        assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
        found[0]["id"].clone()
    }
}

/// Runs `hookrpc` with `args` until it exits (killed after 30 s: a server that should have
/// refused to start); returns its exit code and what it printed on stderr and stdout.
pub fn run_to_exit(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `hookrpc serve` on the database `db` with the catalog file `catalog`, until it exits (see
/// [`run_to_exit`]): for starts that must be refused. Returns the exit code and stderr.
pub fn serve_to_exit(db: &str, catalog: &str) -> (Option<i32>, String) {
    serve_to_exit_with(db, &["--catalog", catalog])
}

/// `hookrpc serve` on the database `db` with `args`, until it exits (see [`run_to_exit`]).
pub fn serve_to_exit_with(db: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut all: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--db", db]
        .iter()
        .map(|s| s.to_string())
        .collect();
    all.extend(with_key_for(
        db,
        args.iter().map(|s| s.to_string()).collect(),
    ));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let (code, stderr, _) = run_to_exit(&all);
    (code, stderr)
}

/// Where the test binary is, for tests that need the path.
pub fn binary() -> &'static Path {
    Path::new(bin())
}

/// The sum of one member (`attempts`, `succeeded`, ...) over the buckets of getDeliveryStats.
pub fn bucket_sum(buckets: &Value, member: &str) -> i64 {
    buckets
        .as_array()
        .expect("an array of buckets")
        .iter()
        .map(|b| b[member].as_i64().expect("an integer member"))
        .sum()
}
