//! Prometheus metrics: calls by method and code, call latency, deliveries by outcome, attempt
//! latency, and queue gauges refreshed when `/metrics` is scraped.

use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often recorded histogram samples are folded into their summaries.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the recorder once per process, with its upkeep.
pub fn install() {
    let mut first = false;
    let handle = HANDLE.get_or_init(|| {
        first = true;
        PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .expect("static buckets are valid")
            .install_recorder()
            .expect("the metrics recorder is installed once")
    });
    if first {
        // A histogram keeps every sample until it is drained, which a scrape does; nobody may
        // scrape at all, so drain on a timer too, or memory grows with every call.
        let handle = handle.clone();
        std::thread::Builder::new()
            .name("hookrpc-metrics".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            })
            .expect("spawn the metrics upkeep thread");
    }
}

/// A method's handles for the common case, a success: looking a metric up by name and labels
/// (hashing, allocating the label set) costs more than recording it.
#[derive(Clone)]
struct CallMetrics {
    ok: Counter,
    duration: Histogram,
}

static CALLS: OnceLock<Mutex<HashMap<&'static str, CallMetrics>>> = OnceLock::new();

/// `code` is None for a success (labelled `ok`), else the error code.
pub fn record_call(method: &'static str, code: Option<i32>, elapsed: Duration) {
    let handles = {
        let mut calls = CALLS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        calls
            .entry(method)
            .or_insert_with(|| CallMetrics {
                ok: counter!("hookrpc_calls_total", "method" => method, "code" => "ok"),
                duration: histogram!("hookrpc_call_duration_seconds", "method" => method),
            })
            .clone()
    };
    match code {
        None => handles.ok.increment(1),
        Some(code) => {
            counter!("hookrpc_calls_total", "method" => method, "code" => code.to_string())
                .increment(1)
        }
    }
    handles.duration.record(elapsed.as_secs_f64());
}

/// One attempt (one HTTP request) and the deliveries it carried.
pub fn record_attempt(outcome: &'static str, deliveries: usize, elapsed: Duration) {
    counter!("hookrpc_deliveries_total", "outcome" => outcome).increment(deliveries as u64);
    histogram!("hookrpc_attempt_duration_seconds", "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// Rows retention removed, by kind (`hookrpc_retention_removed_total{kind}`).
pub fn retention_removed(removed: &crate::store::retention::Removed) {
    for (kind, count) in [
        ("events", removed.events),
        ("deliveries", removed.deliveries),
        ("attempts", removed.attempts),
        ("webhooks", removed.webhooks),
    ] {
        counter!("hookrpc_retention_removed_total", "kind" => kind).increment(count);
    }
}

/// When this node's last retention pass went through without an error: an alert on its age
/// finds removal that has stopped.
pub fn retention_pass_done(epoch_secs: i64) {
    gauge!("hookrpc_retention_last_pass_timestamp_seconds").set(epoch_secs as f64);
}

/// The text of `/metrics`, after refreshing the queue gauges and the bytes of request bodies
/// held (of --max-body-memory).
pub fn render(
    pending: i64,
    oldest_pending_age_secs: i64,
    open_circuits: i64,
    body_bytes: usize,
) -> String {
    gauge!("hookrpc_request_body_bytes").set(body_bytes as f64);
    gauge!("hookrpc_pending_deliveries").set(pending as f64);
    gauge!("hookrpc_oldest_pending_delivery_age_seconds").set(oldest_pending_age_secs as f64);
    gauge!("hookrpc_open_circuits").set(open_circuits as f64);
    HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}
