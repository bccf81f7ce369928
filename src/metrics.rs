//! Prometheus metrics: calls by method and code, call latency, deliveries by outcome, attempt
//! latency, and queue gauges refreshed when `/metrics` is scraped.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once per process.
pub fn install() {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .expect("static buckets are valid")
            .install_recorder()
            .expect("the metrics recorder is installed once")
    });
}

/// `code` is None for a success (labelled `ok`), else the error code.
pub fn record_call(method: &'static str, code: Option<i32>, elapsed: Duration) {
    let code = code.map_or_else(|| "ok".to_owned(), |c| c.to_string());
    counter!("hookrpc_calls_total", "method" => method, "code" => code).increment(1);
    histogram!("hookrpc_call_duration_seconds", "method" => method).record(elapsed.as_secs_f64());
}

/// One attempt (one HTTP request) and the deliveries it carried.
pub fn record_attempt(outcome: &'static str, deliveries: usize, elapsed: Duration) {
    counter!("hookrpc_deliveries_total", "outcome" => outcome).increment(deliveries as u64);
    histogram!("hookrpc_attempt_duration_seconds", "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// The text of `/metrics`, after refreshing the queue gauges.
pub fn render(pending: i64, oldest_pending_age_secs: i64, open_circuits: i64) -> String {
    gauge!("hookrpc_pending_deliveries").set(pending as f64);
    gauge!("hookrpc_oldest_pending_delivery_age_seconds").set(oldest_pending_age_secs as f64);
    gauge!("hookrpc_open_circuits").set(open_circuits as f64);
    HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}
