//! `stats`: getDeliveryStats on an account with a million deliveries, asked each question
//! `ASKED` times over HTTP (median and slowest quoted, round trip included).
//!
//! 1. Delivered: 100k events (`addEvents`, 1000 per call) to 10 webhooks of one account on a
//!    local receiver, 1M deliveries, all delivered; then the questions the dashboard asks.
//! 2. Spread: the rows an account has after 1M deliveries spread over the last 41 days (10
//!    webhooks, every minute of each with attempts in one or two latency classes), written
//!    straight into `attempt_stats` as recording those attempts would have: days of traffic
//!    cannot be waited for. Then the same questions, the longest periods allowed, and the
//!    worst one (1000 buckets of 59 minutes: the most minute rows a call can read).
//!
//! Beside them, `countDeliveries` on the same account: what a question costs that reads the
//! deliveries themselves.

use super::{call_many, delivery_server, median, now_us, Hookrpc};
use rusqlite::{params, Connection};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many times each question is asked.
const ASKED: usize = 20;
const WEBHOOKS: usize = 10;
const MINUTES: i64 = 41 * 24 * 60;

pub async fn stats() {
    println!(
        "\n### getDeliveryStats on an account with 1M deliveries (load average before: {})\n",
        load()
    );
    println!("| data | question | rows read | median ms | slowest ms |");
    println!("|---|---|---:|---:|---:|");
    delivered().await;
    spread().await;
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn now() -> i64 {
    (now_us() / 1_000_000) as i64
}

/// 1M deliveries through the API, all delivered.
async fn delivered() {
    let (server, receiver) = delivery_server(WEBHOOKS).await;
    let key = server.key.clone();
    let event =
        json!({"object": "contact", "event": "subscribed", "data": {"email": "a@example.com"}});
    let started = Instant::now();
    call_many(&server, 100, 4, |_| {
        ("addEvents", json!([key, vec![event.clone(); 1000]]))
    })
    .await;
    receiver
        .wait_for(1_000_000, Duration::from_secs(1800))
        .await;
    eprintln!(
        "1M deliveries delivered in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let data = "1M delivered today";
    ask_all(&server, data, &questions(&server).await[..3]).await;
    let count = json!([key, [["status", "exactly", "succeeded"]]]);
    time(
        &server,
        data,
        "countDeliveries (succeeded), for contrast",
        "countDeliveries",
        count,
        "1M deliveries",
    )
    .await;
}

/// The questions, each with its label and params.
async fn questions(server: &Hookrpc) -> Vec<(&'static str, Value)> {
    let key = &server.key;
    let one = server.call("searchWebhooks", json!([key, [], 1]));
    let webhook = one.await[0]["id"].clone();
    let until = now();
    vec![
        ("account, last 24 h by hour (the default)", json!([key])),
        ("one webhook, last 24 h by hour", json!([key, webhook])),
        (
            "account, last hour by minute",
            json!([key, 0, until - 3600, until, 60]),
        ),
        (
            "account, last 30 days by hour",
            json!([key, 0, until - 30 * 86400, until, 3600]),
        ),
        // since moves back to its minute: 999 intervals back make at most 1000 buckets.
        (
            "account, 1000 buckets of a minute",
            json!([key, 0, until - 999 * 60, until, 60]),
        ),
        (
            "account, 1000 buckets of 59 min (the worst)",
            json!([key, 0, until - 999 * 3540, until, 3540]),
        ),
        (
            "one webhook, 1000 buckets of 59 min",
            json!([key, webhook, until - 999 * 3540, until, 3540]),
        ),
    ]
}

async fn ask_all(server: &Arc<Hookrpc>, data: &str, questions: &[(&'static str, Value)]) {
    for (label, params) in questions {
        let rows = rows_read(server, params);
        time(
            server,
            data,
            label,
            "getDeliveryStats",
            params.clone(),
            &rows,
        )
        .await;
    }
}

/// Asks `ASKED` times; prints a row of the table.
async fn time(server: &Hookrpc, data: &str, label: &str, method: &str, params: Value, rows: &str) {
    let mut ms = Vec::with_capacity(ASKED);
    for _ in 0..ASKED {
        let started = Instant::now();
        server.call(method, params.clone()).await;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let slowest = ms.iter().copied().fold(0.0, f64::max);
    println!(
        "| {data} | {label} | {rows} | {:.2} | {slowest:.2} |",
        median(ms)
    );
}

/// How many rows of attempt_stats the question reads (the span the server picks for it).
fn rows_read(server: &Hookrpc, params: &Value) -> String {
    let p = params.as_array().expect("positional params");
    let int = |i: usize, default: i64| p.get(i).and_then(Value::as_i64).unwrap_or(default);
    let until = int(3, now());
    let interval = int(4, 3600);
    let since = int(2, until - 86_400);
    let span = if interval % 3600 == 0 { 3600 } else { 60 };
    let webhook = int(1, 0);
    let conn = Connection::open(server.db()).expect("open the database");
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM attempt_stats
             WHERE webhook_id = ?1 AND span = ?2 AND start >= ?3 AND start < ?4",
            params![webhook, span, since - since.rem_euclid(span), until],
            |r| r.get(0),
        )
        .expect("count rows");
    rows.to_string()
}

/// The rows of 1M attempts over the last 41 days, written directly; then the questions.
async fn spread() {
    let server = Arc::new(Hookrpc::start(&["--max-concurrent-calls", "1000"]));
    let key = server.key.clone();
    let ids = call_many(&server, WEBHOOKS, 4, |i| {
        let url = format!("https://example.com/{i}");
        (
            "addWebhook",
            json!([key, {"object": "contact", "event": "subscribed", "url": url}]),
        )
    })
    .await;
    let attempts = write_spread_rows(&server, &ids);
    let data = format!("{}k attempts over 41 days", attempts / 1000);
    ask_all(&server, &data, &questions(&server).await).await;
}

/// Every minute of the last 41 days (to the end of this hour), for each webhook: one attempt of ~47 ms, and on two
/// minutes of three one more of ~191 ms; the hour rows are their sums, and the account's rows
/// (webhook 0) the sums of its webhooks'. Returns the attempts.
fn write_spread_rows(server: &Hookrpc, webhooks: &[Value]) -> i64 {
    let mut conn = Connection::open(server.db()).expect("open the database");
    conn.busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    let tx = conn.transaction().expect("begin");
    // 41 days of whole hours, up to the end of the current one.
    let first = (now() / 3600 + 1 - MINUTES / 60) * 3600;
    {
        let mut add = tx
            .prepare(
                "INSERT INTO attempt_stats (account_id, webhook_id, span, start, latency_class,
                   attempts, succeeded, retried, failed)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?5, 0, 0)
                 ON CONFLICT DO UPDATE SET attempts = attempts + ?5, succeeded = succeeded + ?5",
            )
            .expect("prepare");
        let ids = webhooks.iter().map(|w| w.as_i64().expect("an id"));
        // The account's rows (webhook 0, account 1 of a fresh database) count every
        // webhook's attempts again.
        let account = std::iter::repeat_n(0, webhooks.len());
        for id in ids.chain(account) {
            for minute in 0..MINUTES {
                let start = first + minute * 60;
                add.execute(params![id, 60, start, 47, 1]).expect("insert");
                if minute % 3 != 0 {
                    add.execute(params![id, 60, start, 191, 1]).expect("insert");
                }
            }
            for hour in 0..MINUTES / 60 {
                let start = first + hour * 3600;
                add.execute(params![id, 3600, start, 47, 60])
                    .expect("insert");
                add.execute(params![id, 3600, start, 191, 40])
                    .expect("insert");
            }
        }
    }
    tx.commit().expect("commit");
    let per_webhook = MINUTES + MINUTES * 2 / 3;
    per_webhook * webhooks.len() as i64
}
