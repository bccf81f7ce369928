//! `svix` and `svix-latency`: the `single` and `latency` runs against Svix's open-source server,
//! side by side with hookrpc on the same machine, the same PostgreSQL server, the same callers
//! and the same receiver (which verifies every signature: Svix signs as Standard Webhooks, with
//! the secret the endpoint is given).
//!
//! Svix is not a dependency of hookrpc: `SVIX_BIN` names a `svix-server` built from its source
//! (BENCHMARKS.md says how), and `BENCH_DB` the PostgreSQL server (an admin url, as for
//! hookrpc's runs). Each run makes a database of its own and drops it after. Svix runs with its
//! in-memory queue and cache: its fastest setting on one node (no Redis round trips), and with
//! `whitelabel_headers`, so that it signs in the `webhook-*` headers the receiver checks.

use super::{now_us, one_at_a_time, psql, steady_latency, Receiver, SECRET};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `svix-server` on a port of its own with a fresh database, one application and one endpoint
/// at the receiver.
struct Svix {
    child: Child,
    base: String,
    token: String,
    /// The admin url and the database's name, dropped at the end.
    admin: String,
    database: String,
    app: String,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
}

pub async fn single(seconds: u64) {
    let (receiver, addr) = Receiver::start().await;
    let svix = Arc::new(Svix::start(addr).await);
    println!(
        "\n### One at a time, Svix: a message per call from 32 callers for {seconds} s, 1 endpoint\n"
    );
    let event = json!({"object": "contact", "event": "subscribed"});
    one_at_a_time(seconds, &receiver, move || {
        let (svix, event) = (svix.clone(), event.clone());
        async move { svix.publish(event).await }
    })
    .await;
}

pub async fn latency(seconds: u64) {
    let (receiver, addr) = Receiver::start().await;
    let svix = Arc::new(Svix::start(addr).await);
    println!("\n### Publish→receive latency, Svix: 1 endpoint, a message every ms for {seconds} s");
    steady_latency(seconds, &receiver, move |event| {
        let svix = svix.clone();
        async move { svix.publish(event).await }
    })
    .await;
}

fn binary() -> PathBuf {
    std::env::var_os("SVIX_BIN")
        .map(PathBuf::from)
        .expect("SVIX_BIN: the svix-server to run (BENCHMARKS.md says how to build it)")
}

impl Svix {
    async fn start(receiver: SocketAddr) -> Svix {
        let admin = std::env::var("BENCH_DB").expect("BENCH_DB: a PostgreSQL admin url");
        let database = format!("svix_bench_{}_{}", std::process::id(), now_us());
        psql(&admin, &format!("CREATE DATABASE {database}"));
        let dsn = format!("{}/{database}", admin.rsplit_once('/').expect("a url").0);
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port() // free again when dropped
        };
        let dir = tempfile::tempdir().expect("temp dir");
        // Svix reads `config.toml` from its working directory.
        let config = format!(
            "listen_address = \"127.0.0.1:{port}\"\n\
             jwt_secret = \"hookrpc-bench-svix-jwt-secret\"\n\
             db_dsn = \"{dsn}\"\n\
             queue_type = \"memory\"\n\
             cache_type = \"memory\"\n\
             log_level = \"info\"\n\
             whitelabel_headers = true\n\
             whitelist_subnets = [\"127.0.0.1/32\"]\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("write config.toml");
        let child = Command::new(binary())
            .arg("--run-migrations")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start svix-server");
        let token = Svix::token(&dir);
        let mut svix = Svix {
            child,
            base: format!("http://127.0.0.1:{port}/api/v1"),
            token,
            admin,
            database,
            app: String::new(),
            _dir: dir,
            client: reqwest::Client::new(),
        };
        svix.wait_until_up().await;
        svix.app = svix.post("/app/", json!({"name": "bench"})).await["id"]
            .as_str()
            .expect("an application id")
            .to_owned();
        let endpoint = json!({"url": format!("http://{receiver}/svix"), "secret": SECRET});
        svix.post(&format!("/app/{}/endpoint/", svix.app), endpoint)
            .await;
        svix
    }

    /// An API token for the default organisation, made by `svix-server jwt generate`.
    fn token(dir: &tempfile::TempDir) -> String {
        let out = Command::new(binary())
            .args(["jwt", "generate"])
            .current_dir(dir.path())
            .output()
            .expect("svix-server jwt generate");
        let out = String::from_utf8(out.stdout).expect("utf-8");
        out.lines()
            .find_map(|l| l.strip_prefix("Token (Bearer): "))
            .unwrap_or_else(|| panic!("no token in {out:?}"))
            .trim()
            .to_owned()
    }

    async fn wait_until_up(&self) {
        let started = Instant::now();
        let health = format!("{}/health/", self.base);
        while !matches!(self.client.get(&health).send().await, Ok(r) if r.status().is_success()) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "svix-server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A POST that must succeed; returns its reply.
    async fn post(&self, path: &str, body: Value) -> Value {
        let reply = self
            .client
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("svix-server answers");
        let status = reply.status();
        let text = reply.text().await.expect("a reply");
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).expect("a JSON reply")
    }

    /// Creates a message carrying `payload`.
    async fn publish(&self, payload: Value) {
        let message = json!({"eventType": "contact.subscribed", "payload": payload});
        self.post(&format!("/app/{}/msg/", self.app), message).await;
    }
}

impl Drop for Svix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
        );
    }
}
