//! The benchmarks behind BENCHMARKS.md. Run them with `bench/run.sh [rpc|delivery|memory|all]`,
//! which builds this and the server in release mode first.
//!
//! - `rpc`: wrk (-t2 -c32) against five methods, each beside three ceilings measured in the
//!   same rounds: hookrpc's cheapest call (an unknown method, answered -32601 by the same HTTP
//!   layer, dialect check and jsonrpsee dispatch), a bare jsonrpsee server whose method does no
//!   work, and a plain hyper endpoint that only answers "ok".
//! - `delivery`: events from `addEvents` to a local receiver that verifies every signature, with
//!   1, 10 and 100 webhooks; then publish→receive latency at a steady 1000 events/s.
//! - `memory`: resident size with 100k webhooks and 1M pending deliveries whose receiver is down.
//! - `unscraped`: resident size through a steady call load while nobody scrapes `/metrics`.
//! - `connections`: 10 webhooks on one receiver host, one event per request: TCP connections
//!   the receiver accepted per 1000 requests, and deliveries/s.
//! - `single`: one webhook, one event per request, events published by `addEvent` one at a
//!   time from 32 callers: deliveries/s, and the most requests the receiver had in hand at once.
//! - `soak`: a steady publish and delivery load well past a short retention (15 s), then the
//!   same load with `--retention 0`: the database's size over time, and call latency (p50/p99)
//!   with removal running beside the same without it.
//!
//! - `stats`: getDeliveryStats on an account with 1M deliveries (`bench/stats.rs`).
//! - `svix`, `svix-latency`: `single` and `latency` against Svix's server, side by side
//!   (`bench/svix.rs`; needs `SVIX_BIN` and `BENCH_DB`, not part of `all`).
//!
//! Tunables (environment): `BENCH_SECONDS` per wrk run and for the latency run (10),
//! `BENCH_ROUNDS` (3), `BENCH_CONNECTIONS` (32), `BENCH_WEBHOOKS` for the delivery runs
//! (1,10,100), `BENCH_SOAK` seconds of `unscraped` (60), `BENCH_SOAK_RUN` seconds of each run of
//! `soak` (60), `HOOKRPC_BIN` (target/release/hookrpc).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[path = "bench/stats.rs"]
mod stats;
#[path = "bench/svix.rs"]
mod svix;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::main]
async fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let settings = Settings::from_env();
    match what.as_str() {
        "rpc" => rpc(&settings).await,
        "delivery" => delivery(&settings).await,
        "latency" => latency(settings.seconds).await,
        "memory" => memory().await,
        "unscraped" => unscraped().await,
        "connections" => connections().await,
        "single" => single(settings.seconds).await,
        "stats" => stats::stats().await,
        "svix" => svix::single(settings.seconds).await,
        "svix-latency" => svix::latency(settings.seconds).await,
        "soak" => soak().await,
        "all" => {
            rpc(&settings).await;
            delivery(&settings).await;
            single(settings.seconds).await;
            connections().await;
            memory().await;
            unscraped().await;
            stats::stats().await;
        }
        other => {
            eprintln!("usage: bench [rpc|delivery|latency|memory|unscraped|connections|single|stats|soak|svix|svix-latency|all] (not {other:?})");
            std::process::exit(2);
        }
    }
}

struct Settings {
    seconds: u64,
    rounds: usize,
    connections: usize,
}

impl Settings {
    fn from_env() -> Self {
        let get = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Settings {
            seconds: get("BENCH_SECONDS", 10),
            rounds: get("BENCH_ROUNDS", 3) as usize,
            connections: get("BENCH_CONNECTIONS", 32) as usize,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server under test

/// A `hookrpc serve` process on an ephemeral port with a database of its own: a SQLite file,
/// or with `BENCH_DB=postgres://…/postgres` a fresh database on that server, shared by
/// `BENCH_NODES` nodes (default 1; calls go to the first, every node delivers).
struct Hookrpc {
    child: Child,
    /// The cluster's other nodes.
    others: Vec<Child>,
    addr: SocketAddr,
    key: String,
    db: String,
    /// On PostgreSQL: the admin url and the database's name, dropped at the end.
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
}

/// Runs one statement with `psql`.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql: {sql}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Starts one node; returns it with its address and the key it printed (on a new database).
/// The encryption key of servers on PostgreSQL, where a deployment must give one (on SQLite
/// each server makes a key file beside its database).
const BENCH_ENCRYPTION_KEY: &str = "aG9va3JwYy1iZW5jaC1lbmNyeXB0aW9uLWtleS0wMDE=";

fn spawn_node(db: &str, args: &[&str]) -> (Child, SocketAddr, Option<String>) {
    let key: &[&str] = match db.starts_with("postgres") {
        true => &["--encryption-key", BENCH_ENCRYPTION_KEY],
        false => &[],
    };
    let mut child = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--db", db])
        .args(key)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hookrpc (build it with `cargo build --release`)");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut key = None;
    let addr = loop {
        let line = lines.next().expect("hookrpc exited").expect("stdout");
        if let Some(k) = line.strip_prefix("created account default with full-access key: ") {
            key = Some(k.trim().to_owned());
        }
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.trim().parse().expect("an address");
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr, key)
}

impl Hookrpc {
    fn start(args: &[&str]) -> Hookrpc {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = tempfile::tempdir().expect("temp dir");
        let postgres = std::env::var("BENCH_DB").ok().map(|admin| {
            let name = format!(
                "hookrpc_bench_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            );
            psql(&admin, &format!("CREATE DATABASE {name}"));
            (admin, name)
        });
        let db = match &postgres {
            Some((admin, name)) => format!("{}/{name}", admin.rsplit_once('/').expect("a url").0),
            None => dir.path().join("bench.db").to_string_lossy().into_owned(),
        };
        let (child, addr, key) = spawn_node(&db, args);
        let nodes: usize = std::env::var("BENCH_NODES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let others = (1..nodes).map(|_| spawn_node(&db, args).0).collect();
        Hookrpc {
            child,
            others,
            addr,
            key: key.expect("a key on first start"),
            db,
            postgres,
            _dir: dir,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The SQLite file (the modes that write into it directly run on SQLite only).
    fn db(&self) -> PathBuf {
        PathBuf::from(&self.db)
    }

    /// A key of another account, made with `hookrpc key add` beside the running server.
    fn add_key(&self, account: &str) -> String {
        let out = Command::new(binary())
            .args(["key", "add", "--account", account, "--db", &self.db])
            .output()
            .expect("hookrpc key add");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    /// A JSON-RPC 2.0 call that must succeed; returns its result.
    async fn call(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let reply = self
            .client
            .post(self.url())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("hookrpc answers")
            .bytes()
            .await
            .expect("a reply");
        let reply: Value = serde_json::from_slice(&reply).expect("a JSON reply");
        match reply.get("result") {
            Some(result) => result.clone(),
            None => panic!("{method} failed: {reply}"),
        }
    }

    /// The database's size in bytes: the SQLite file with its WAL, or PostgreSQL's
    /// `pg_database_size`.
    fn database_bytes(&self) -> u64 {
        if self.postgres.is_some() {
            return psql(&self.db, "SELECT pg_database_size(current_database())")
                .parse()
                .expect("a size");
        }
        ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", self.db)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Resident set size now and at its peak, in KiB (Linux).
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Hookrpc {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(&mut self.others) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((admin, name)) = &self.postgres {
            psql(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

fn binary() -> PathBuf {
    std::env::var_os("HOOKRPC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/release/hookrpc"))
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn webhook(url: String) -> Value {
    json!({"object": "contact", "event": "subscribed", "url": url, "secret": SECRET})
}

/// Runs `count` calls, `parallel` at a time; `make(i)` builds call `i`.
async fn call_many(
    server: &Arc<Hookrpc>,
    count: usize,
    parallel: usize,
    make: impl Fn(usize) -> (&'static str, Value),
) -> Vec<Value> {
    let slots = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let (method, params) = make(i);
        let permit = slots.clone().acquire_owned().await.expect("open");
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let result = server.call(method, params).await;
            drop(permit);
            result
        }));
    }
    let mut results = Vec::with_capacity(count);
    for task in tasks {
        results.push(task.await.expect("call task"));
    }
    results
}

// ---------------------------------------------------------------------------------------------
// rpc: wrk against each method and the two ceilings

struct Case {
    name: &'static str,
    url: String,
    body: String,
    expect_error: bool,
    /// Events per call, to quote events/s for addEvents.
    items: u64,
}

#[derive(Clone, Copy, Default)]
struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn rpc(settings: &Settings) {
    let ok = serve_ok().await;
    let noop = serve_noop().await;
    let server = Arc::new(Hookrpc::start(&[
        "--max-concurrent-calls",
        "1000",
        "--max-webhooks",
        "10000000",
    ]));
    let key = server.key.clone();
    let ids = call_many(&server, 1000, 32, |i| {
        let mut w = webhook(format!("http://127.0.0.1:9/hooks/{i}"));
        w["list_id"] = json!(i % 50);
        w["name"] = json!(format!("hook {i}"));
        ("addWebhook", json!([key, w]))
    })
    .await;
    // addWebhook gets an account of its own, so the search always sees the same 1000.
    let writer_key = server.add_key("bench-writes");
    let request = |method: &str, params: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
    };
    let get = request("getWebhookById", json!([key, ids[500]]));
    let event =
        json!({"object": "list", "event": "bulk_updated", "list_id": 7, "data": {"rows": 42}});
    let cases = [
        Case {
            name: "ceiling: plain hyper \"ok\"",
            url: format!("http://{ok}/"),
            body: get.clone(),
            expect_error: false,
            items: 1,
        },
        Case {
            name: "ceiling: bare jsonrpsee, a method doing no work",
            url: format!("http://{noop}/"),
            body: get.clone(),
            expect_error: false,
            items: 1,
        },
        Case {
            name: "ceiling: hookrpc unknown method (-32601)",
            url: server.url(),
            body: request("noSuchMethod", json!([key, ids[500]])),
            expect_error: true,
            items: 1,
        },
        Case {
            name: "getWebhookById",
            url: server.url(),
            body: get,
            expect_error: false,
            items: 1,
        },
        Case {
            name: "searchWebhooks (1k webhooks, 2 criteria, sorted, 20 per page)",
            url: server.url(),
            body: request(
                "searchWebhooks",
                json!([
                    key,
                    [["list_id", "less_than", 25], ["url", "contains", "/hooks/"]],
                    20,
                    0,
                    "creation_time",
                    "DESC"
                ]),
            ),
            expect_error: false,
            items: 1,
        },
        Case {
            name: "addWebhook (durable)",
            url: server.url(),
            body: request(
                "addWebhook",
                json!([writer_key, webhook("http://127.0.0.1:9/new/{n}".into())]),
            ),
            expect_error: false,
            items: 1,
        },
        Case {
            name: "addEvent (durable; no webhook matches)",
            url: server.url(),
            body: request("addEvent", json!([key, event])),
            expect_error: false,
            items: 1,
        },
        Case {
            name: "addEvents (100 per call)",
            url: server.url(),
            body: request("addEvents", json!([key, vec![event.clone(); 100]])),
            expect_error: false,
            items: 100,
        },
    ];
    let bodies = tempfile::tempdir().expect("temp dir");
    let mut results = vec![Vec::new(); cases.len()];
    for round in 1..=settings.rounds {
        for (i, case) in cases.iter().enumerate() {
            let result = wrk(settings, case, &bodies.path().join(format!("{i}.json")));
            eprintln!(
                "round {round}: {:<60} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
                case.name, result.rps, result.p50_ms, result.p99_ms
            );
            results[i].push(result);
        }
    }
    let medians: Vec<WrkResult> = results.iter().map(|r| median_result(r)).collect();
    let (hyper_ok, noop_method, bare_call) = (medians[0].rps, medians[1].rps, medians[2].rps);
    println!(
        "\n### RPC: wrk -t2 -c{} -d{}s, median of {} rounds\n",
        settings.connections, settings.seconds, settings.rounds
    );
    println!(
        "| call | req/s | events/s | p50 ms | p99 ms | vs unknown method | vs jsonrpsee no-op | vs plain hyper |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (case, m) in cases.iter().zip(&medians) {
        let events = if case.items > 1 {
            format!("{:.0}", m.rps * case.items as f64)
        } else {
            String::new()
        };
        println!(
            "| {} | {:.0} | {} | {:.2} | {:.2} | {:.0} % | {:.0} % | {:.0} % |",
            case.name,
            m.rps,
            events,
            m.p50_ms,
            m.p99_ms,
            100.0 * m.rps / bare_call,
            100.0 * m.rps / noop_method,
            100.0 * m.rps / hyper_ok
        );
    }
}

fn wrk(settings: &Settings, case: &Case, body_file: &Path) -> WrkResult {
    std::fs::write(body_file, &case.body).expect("write body");
    let mut command = Command::new("wrk");
    command
        .arg("-t2")
        .arg(format!("-c{}", settings.connections))
        .arg(format!("-d{}s", settings.seconds))
        .arg("-s")
        .arg(repo().join("bench/rpc.lua"))
        .arg(&case.url)
        .arg("--")
        .arg(body_file);
    if case.expect_error {
        command.arg("expect-error");
    }
    let out = command.output().expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("wrk printed no result: {text}"));
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let failures = field("failures");
    if failures != 0.0 {
        panic!(
            "{}: {failures} failed replies\n{}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    WrkResult {
        rps: field("rps"),
        p50_ms: field("p50_ms"),
        p99_ms: field("p99_ms"),
    }
}

/// Each figure's median over the rounds, taken separately.
fn median_result(rounds: &[WrkResult]) -> WrkResult {
    let pick = |f: fn(&WrkResult) -> f64| median(rounds.iter().map(f).collect());
    WrkResult {
        rps: pick(|r| r.rps),
        p50_ms: pick(|r| r.p50_ms),
        p99_ms: pick(|r| r.p99_ms),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A ceiling: jsonrpsee alone, with none of hookrpc's layers (HTTP front, dialect, auth,
/// validation, store), and one method, named as the one measured, that does no work.
async fn serve_noop() -> SocketAddr {
    let server = jsonrpsee::server::Server::builder()
        .build("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    let mut module = jsonrpsee::RpcModule::new(());
    module
        .register_method("getWebhookById", |_, _, _| {
            Ok::<_, jsonrpsee::types::ErrorObjectOwned>("ok")
        })
        .expect("a new name");
    // Runs until the benchmark exits.
    std::mem::forget(server.start(module));
    addr
}

/// A ceiling: plain hyper, reads the body and answers a fixed JSON-RPC reply.
async fn serve_ok() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let reply = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":"ok"}"#);
                    Ok::<_, hyper::Error>(hyper::Response::new(Full::new(reply)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// delivery: intake to receiver

/// Counts what arrives, checks every signature with the `standardwebhooks` crate, and keeps
/// each item's publish→receive latency when the publisher stamped it.
#[derive(Default)]
struct Receiver {
    items: AtomicU64,
    requests: AtomicU64,
    forged: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    /// TCP connections accepted.
    connections: AtomicU64,
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
}

impl Receiver {
    async fn start() -> (Arc<Receiver>, SocketAddr) {
        let receiver = Arc::new(Receiver::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let r = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                r.connections.fetch_add(1, Ordering::Relaxed);
                let r = r.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let r = r.clone();
                        async move { r.answer(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (receiver, addr)
    }

    async fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.most_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        let answer = self.check(req).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        answer
    }

    async fn check(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let arrived = now_us();
        let verifier = standardwebhooks::Webhook::new(SECRET).expect("a valid secret");
        if verifier.verify(&body, &parts.headers).is_err() {
            self.forged.fetch_add(1, Ordering::Relaxed);
        }
        // hookrpc sends a list of items; Svix (`svix` mode) one message, counted as one item.
        let items = match serde_json::from_slice(&body) {
            Ok(Value::Array(items)) => items,
            Ok(item @ Value::Object(_)) => vec![item],
            _ => Vec::new(),
        };
        let stamped: Vec<u64> = items
            .iter()
            .filter_map(|item| item["data"]["sent_us"].as_u64())
            .map(|sent| arrived.saturating_sub(sent))
            .collect();
        if !stamped.is_empty() {
            self.latencies_us
                .lock()
                .expect("not poisoned")
                .extend(stamped);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.items.fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
    }

    async fn wait_for(&self, items: u64, limit: Duration) {
        let started = Instant::now();
        while self.items.load(Ordering::Relaxed) < items {
            assert!(
                started.elapsed() < limit,
                "only {} of {items} items arrived",
                self.items.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn delivery(settings: &Settings) {
    println!(
        "\n### Delivery: addEvents (1000 per call, 4 callers) → receiver verifying signatures\n"
    );
    println!("| webhooks | events | deliveries | intake done (s) | all received (s) | events/s | deliveries/s | requests | forged |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let counts = std::env::var("BENCH_WEBHOOKS").unwrap_or_else(|_| "1,10,100".into());
    for webhooks in counts
        .split(',')
        .filter_map(|n| n.trim().parse::<usize>().ok())
    {
        // About 100k deliveries in each run, however they fan out.
        let events = (100_000 / webhooks).max(1000);
        throughput(webhooks, events).await;
    }
    latency(settings.seconds).await;
}

async fn delivery_server(webhooks: usize) -> (Arc<Hookrpc>, Arc<Receiver>) {
    delivery_server_with(webhooks, json!({})).await
}

/// `webhooks` webhooks on one receiver, each with `details` over the defaults.
async fn delivery_server_with(webhooks: usize, details: Value) -> (Arc<Hookrpc>, Arc<Receiver>) {
    let server = Arc::new(Hookrpc::start(&[
        "--allow-private-targets",
        "--max-concurrent-calls",
        "1000",
    ]));
    let (receiver, addr) = Receiver::start().await;
    let key = server.key.clone();
    call_many(&server, webhooks, 16, |i| {
        let mut w = webhook(format!("http://{addr}/w/{i}"));
        for (k, v) in details.as_object().expect("an object") {
            w[k] = v.clone();
        }
        ("addWebhook", json!([key, w]))
    })
    .await;
    (server, receiver)
}

async fn throughput(webhooks: usize, events: usize) {
    let (server, receiver) = delivery_server(webhooks).await;
    let key = server.key.clone();
    let per_call = 1000;
    let event = json!({"object": "contact", "event": "subscribed", "contact_id": 1, "data": {"email": "a@example.com"}});
    let started = Instant::now();
    call_many(&server, events / per_call, 4, |_| {
        ("addEvents", json!([key, vec![event.clone(); per_call]]))
    })
    .await;
    let intake = started.elapsed().as_secs_f64();
    let expected = (events / per_call * per_call * webhooks) as u64;
    receiver.wait_for(expected, Duration::from_secs(600)).await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "| {webhooks} | {events} | {expected} | {intake:.2} | {seconds:.2} | {:.0} | {:.0} | {} | {} |",
        events as f64 / seconds,
        expected as f64 / seconds,
        receiver.requests.load(Ordering::Relaxed),
        receiver.forged.load(Ordering::Relaxed),
    );
}

/// One webhook, one `addEvent` every millisecond; each event carries the time it was sent.
async fn latency(seconds: u64) {
    let (server, receiver) = delivery_server(1).await;
    println!("\n### Publish→receive latency: 1 webhook, addEvent at 1000 events/s for {seconds} s");
    steady_latency(seconds, &receiver, move |event| {
        let server = server.clone();
        async move {
            server.call("addEvent", json!([server.key, event])).await;
        }
    })
    .await;
}

/// Publishes one event every millisecond for `seconds` after a second of warm-up (`publish`
/// sends the event it is given, which carries the time it was sent), waits until `receiver`
/// has them all, and prints the latency table.
async fn steady_latency<F, Call>(seconds: u64, receiver: &Receiver, publish: F)
where
    F: Fn(Value) -> Call + Clone + Send + 'static,
    Call: std::future::Future<Output = ()> + Send,
{
    let warmup = 1000u64;
    let total = warmup + seconds * 1000;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut calls = Vec::with_capacity(total as usize);
    for _ in 0..total {
        tick.tick().await;
        let publish = publish.clone();
        calls.push(tokio::spawn(async move {
            let event = json!({"object": "contact", "event": "subscribed",
                               "data": {"sent_us": now_us()}});
            publish(event).await;
        }));
    }
    for call in calls {
        call.await.expect("publish");
    }
    receiver.wait_for(total, Duration::from_secs(120)).await;
    let mut latencies = receiver.latencies_us.lock().expect("not poisoned").clone();
    let measured = latencies.split_off(warmup as usize); // arrival order; warm-up first
    let mut ms: Vec<f64> = measured.iter().map(|&us| us as f64 / 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() - 1) as f64 * p) as usize];
    println!("(after {warmup} warm-up events)\n");
    println!("| events | p50 ms | p90 ms | p99 ms | max ms | requests |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        ms.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        ms[ms.len() - 1],
        receiver.requests.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------------------------
// memory: a big backlog whose receiver is down

async fn memory() {
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr") // closed again when dropped: connections refused
    };
    let server = Arc::new(Hookrpc::start(&[
        "--allow-private-targets",
        "--max-concurrent-calls",
        "1000",
        "--max-webhooks",
        "200000",
    ]));
    let key = server.key.clone();
    let started = Instant::now();
    call_many(&server, 100_000, 32, |i| {
        (
            "addWebhook",
            json!([key, webhook(format!("http://{down}/w/{i}"))]),
        )
    })
    .await;
    let seeded = started.elapsed().as_secs_f64();
    let after_webhooks = server.memory_kib();
    let event = json!({"object": "contact", "event": "subscribed"});
    for _ in 0..10 {
        server.call("addEvent", json!([key, event])).await;
    }
    let pending = server
        .call(
            "countDeliveries",
            json!([key, [["status", "exactly", "pending"]]]),
        )
        .await;
    // Let the engine work through the backlog against the dead receiver for a while.
    let mut highest = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        highest = highest.max(server.memory_kib().0);
    }
    let (now, peak) = server.memory_kib();
    let attempts = server
        .call(
            "countDeliveries",
            json!([key, [["attempt_count", "greater_than", 0]]]),
        )
        .await;
    println!(
        "\n### Memory: 100k webhooks, 1M pending deliveries, receiver down (connection refused)\n"
    );
    println!("| stage | RSS MiB |");
    println!("|---|---:|");
    println!(
        "| after 100k addWebhook ({seeded:.1} s, {:.0}/s) | {:.1} |",
        100_000.0 / seeded,
        after_webhooks.0 as f64 / 1024.0
    );
    println!(
        "| {pending} pending; highest sample over 30 s of retrying | {:.1} |",
        highest as f64 / 1024.0
    );
    println!(
        "| at the end ({attempts} deliveries attempted at least once) | {:.1} |",
        now as f64 / 1024.0
    );
    println!("| peak (VmHWM) | {:.1} |", peak as f64 / 1024.0);
}

// ---------------------------------------------------------------------------------------------
// unscraped: memory through a steady call load, /metrics never read

async fn unscraped() {
    let seconds: u64 = std::env::var("BENCH_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let server = Arc::new(Hookrpc::start(&["--max-concurrent-calls", "1000"]));
    let key = server.key.clone();
    let id = server
        .call(
            "addWebhook",
            json!([key, webhook("https://hooks.invalid/x".into())]),
        )
        .await;
    println!(
        "\n### Memory through {seconds} s of getWebhookById (32 callers), /metrics never scraped\n"
    );
    println!("| after s | calls | RSS MiB |");
    println!("|---:|---:|---:|");
    let calls = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let (server, calls, key, id) = (server.clone(), calls.clone(), key.clone(), id.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    server.call("getWebhookById", json!([key, id])).await;
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    println!("| 0 | 0 | {:.1} |", server.memory_kib().0 as f64 / 1024.0);
    let step = (seconds / 6).max(1);
    for t in (step..=seconds).step_by(step as usize) {
        tokio::time::sleep_until((deadline - Duration::from_secs(seconds - t)).into()).await;
        println!(
            "| {t} | {} | {:.1} |",
            calls.load(Ordering::Relaxed),
            server.memory_kib().0 as f64 / 1024.0
        );
    }
    for caller in callers {
        caller.await.expect("caller");
    }
}

// ---------------------------------------------------------------------------------------------
// connections: many webhooks on one host

async fn connections() {
    let events = 20_000;
    let (server, receiver) = delivery_server_with(10, json!({"batch_size": 1})).await;
    let key = server.key.clone();
    let event = json!({"object": "contact", "event": "subscribed"});
    let started = Instant::now();
    call_many(&server, events / 1000, 4, |_| {
        ("addEvents", json!([key, vec![event.clone(); 1000]]))
    })
    .await;
    let expected = events as u64 * 10;
    receiver.wait_for(expected, Duration::from_secs(600)).await;
    let seconds = started.elapsed().as_secs_f64();
    let requests = receiver.requests.load(Ordering::Relaxed);
    let connections = receiver.connections.load(Ordering::Relaxed);
    println!(
        "\n### Connections: 10 webhooks on one receiver host, batch_size 1, {events} events\n"
    );
    println!("| requests | connections opened | per 1000 requests | deliveries/s |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {requests} | {connections} | {:.1} | {:.0} |",
        connections as f64 * 1000.0 / requests as f64,
        expected as f64 / seconds
    );
}

// ---------------------------------------------------------------------------------------------
// single: one event per call, one event per request

async fn single(seconds: u64) {
    let (server, receiver) = delivery_server_with(1, json!({"batch_size": 1})).await;
    println!(
        "\n### One at a time: addEvent from 32 callers for {seconds} s, 1 webhook, batch_size 1\n"
    );
    one_at_a_time(seconds, &receiver, move || {
        let server = server.clone();
        async move {
            let event = json!({"object": "contact", "event": "subscribed"});
            server.call("addEvent", json!([server.key, event])).await;
        }
    })
    .await;
}

/// Publishes one event per call from 32 callers for `seconds` (`publish` makes one call), waits
/// until `receiver` has them all, and prints the row of the `single` table.
async fn one_at_a_time<F, Call>(seconds: u64, receiver: &Receiver, publish: F)
where
    F: Fn() -> Call + Clone + Send + 'static,
    Call: std::future::Future<Output = ()> + Send,
{
    let published = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let (publish, published) = (publish.clone(), published.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    publish().await;
                    published.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("caller");
    }
    let published = published.load(Ordering::Relaxed);
    let intake = started.elapsed().as_secs_f64();
    receiver.wait_for(published, Duration::from_secs(600)).await;
    let all = started.elapsed().as_secs_f64();
    println!("| events | events/s published | all received (s) | deliveries/s | most in flight at the receiver | forged |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {published} | {:.0} | {all:.2} | {:.0} | {} | {} |",
        published as f64 / intake,
        published as f64 / all,
        receiver.most_in_flight.load(Ordering::Relaxed),
        receiver.forged.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------------------------
// soak: a steady load well past a short retention, beside the same load keeping everything

/// The retention of the soak's first run: short, so that a run of a minute goes well past it.
const SOAK_RETENTION: &str = "15s";

/// Call latencies in ms, by method.
#[derive(Default)]
struct Latencies(Mutex<std::collections::BTreeMap<&'static str, Vec<f64>>>);

impl Latencies {
    fn record(&self, method: &'static str, started: Instant) {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut all = self.0.lock().expect("not poisoned");
        all.entry(method).or_default().push(ms);
    }

    /// p50 and p99 of `method`.
    fn percentiles(&self, method: &str) -> (f64, f64) {
        let mut ms = self.0.lock().expect("not poisoned")[method].clone();
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| ms[((ms.len() - 1) as f64 * p) as usize];
        (at(0.5), at(0.99))
    }
}

/// What one run of the soak saw.
struct SoakRun {
    /// (seconds since the start, database bytes, events the account holds)
    samples: Vec<(u64, u64, i64)>,
    latencies: Latencies,
    delivered: u64,
    forged: u64,
}

async fn soak() {
    let seconds: u64 = std::env::var("BENCH_SOAK_RUN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let removing = soak_run(SOAK_RETENTION, seconds).await;
    let keeping = soak_run("0", seconds).await;
    println!(
        "\n### Retention soak: about 1050 events/s for {seconds} s, 1 webhook, --retention \
         {SOAK_RETENTION} beside --retention 0\n"
    );
    println!("| after s | database MiB, retention {SOAK_RETENTION} | events kept | database MiB, retention 0 | events kept |");
    println!("|---:|---:|---:|---:|---:|");
    for (a, b) in removing.samples.iter().zip(&keeping.samples) {
        let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
        println!(
            "| {} | {:.1} | {} | {:.1} | {} |",
            a.0,
            mib(a.1),
            a.2,
            mib(b.1),
            b.2
        );
    }
    println!("\n| run | addEvents (100) p50 / p99 ms | addEvent p50 / p99 ms | getWebhookById p50 / p99 ms | delivered | forged |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, run) in [
        (format!("--retention {SOAK_RETENTION}"), &removing),
        ("--retention 0".to_owned(), &keeping),
    ] {
        let cell = |method: &str| {
            let (p50, p99) = run.latencies.percentiles(method);
            format!("{p50:.2} / {p99:.2}")
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            cell("addEvents"),
            cell("addEvent"),
            cell("getWebhookById"),
            run.delivered,
            run.forged
        );
    }
}

/// One run: 10 `addEvents` of 100 events a second, and 50 `addEvent` and 50 `getWebhookById`
/// a second beside them, each call timed, to one webhook whose receiver verifies every
/// signature; the database's size every 5 s.
async fn soak_run(retention: &str, seconds: u64) -> SoakRun {
    let server = Arc::new(Hookrpc::start(&[
        "--allow-private-targets",
        "--max-concurrent-calls",
        "1000",
        "--retention",
        retention,
    ]));
    let (receiver, addr) = Receiver::start().await;
    let key = server.key.clone();
    let hook = server
        .call(
            "addWebhook",
            json!([key, webhook(format!("http://{addr}/soak"))]),
        )
        .await;
    let latencies = Arc::new(Latencies::default());
    let published = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let event = json!({"object": "contact", "event": "subscribed", "contact_id": 1,
                       "data": {"email": "ann@example.com", "note": "x".repeat(200)}});
    let streams = [
        (
            "addEvents",
            json!([key, vec![event.clone(); 100]]),
            100,
            100u64,
        ),
        ("addEvent", json!([key, event]), 20, 1),
        ("getWebhookById", json!([key, hook]), 20, 0),
    ];
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(method, params, every_ms, events)| {
            let (server, latencies, published) =
                (server.clone(), latencies.clone(), published.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(every_ms));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while Instant::now() < deadline {
                    tick.tick().await;
                    let started = Instant::now();
                    server.call(method, params.clone()).await;
                    latencies.record(method, started);
                    published.fetch_add(events, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    let started = Instant::now();
    for t in (5..=seconds).step_by(5) {
        tokio::time::sleep_until((started + Duration::from_secs(t)).into()).await;
        let kept = server.call("countEvents", json!([key])).await;
        samples.push((t, server.database_bytes(), kept.as_i64().unwrap_or(0)));
        eprintln!(
            "soak {retention}: {t} s, {} bytes",
            samples[samples.len() - 1].1
        );
    }
    for task in tasks {
        task.await.expect("stream");
    }
    let published = published.load(Ordering::Relaxed);
    receiver.wait_for(published, Duration::from_secs(120)).await;
    SoakRun {
        samples,
        latencies: Arc::into_inner(latencies).expect("streams ended"),
        delivered: receiver.items.load(Ordering::Relaxed),
        forged: receiver.forged.load(Ordering::Relaxed),
    }
}
