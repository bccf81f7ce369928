//! Every tunable in one struct, from flags and `HOOKRPC_*` environment variables.

use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The retry schedule: the delay before each retry, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e}"))
}

/// A duration that must pass: a timeout, lease or interval of zero would fail or repeat every
/// time.
fn parse_period(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be longer than 0")),
        d => Ok(d),
    }
}

/// How long finished history is kept: `None` keeps it for ever (`--retention 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

fn parse_retention(s: &str) -> Result<Retention, String> {
    match parse_duration_or_zero(s)? {
        d if d.is_zero() => Ok(Retention(None)),
        // Removal works in whole seconds (the times it compares are epoch seconds).
        d if d < Duration::from_secs(1) => {
            Err(format!("{s:?}: give 0 to keep everything, or at least 1s"))
        }
        d => Ok(Retention(Some(d))),
    }
}

/// How long a webhook's circuit may stay open before the webhook is deactivated: `None` never
/// (`--disable-after 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisableAfter(pub Option<Duration>);

fn parse_disable_after(s: &str) -> Result<DisableAfter, String> {
    match parse_duration_or_zero(s)? {
        d if d.is_zero() => Ok(DisableAfter(None)),
        // The times it compares are epoch seconds.
        d if d < Duration::from_secs(1) => {
            Err(format!("{s:?}: give 0 to never deactivate, or at least 1s"))
        }
        d => Ok(DisableAfter(Some(d))),
    }
}

/// A duration, where a bare `0` (no unit) also means none.
fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "0" => Ok(Duration::ZERO),
        _ => parse_duration(s),
    }
}

/// `--encryption-key` as given: base64 text, checked when the store is opened rather than by
/// clap, whose error would print the refused value (a secret with a typo is still a secret).
/// `Debug` never shows it.
#[derive(Clone)]
pub struct EncryptionKey(pub String);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(***)")
    }
}

impl std::str::FromStr for EncryptionKey {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(EncryptionKey(s.to_owned()))
    }
}

/// The key that seals webhook secrets and Basic-auth passwords in the database (`serve` and
/// `migrate` take it).
#[derive(Debug, Clone, Args)]
pub struct KeyArg {
    /// 32 bytes in base64 (`head -c 32 /dev/urandom | base64`). Without it, a SQLite
    /// deployment uses the key file hookrpc.key beside its database, created (mode 0600) on
    /// first start; PostgreSQL deployments must give it, the same on every node.
    #[arg(long, env = "HOOKRPC_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<EncryptionKey>,
}

fn parse_schedule(s: &str) -> Result<Schedule, String> {
    if s.trim().is_empty() {
        return Ok(Schedule(Vec::new()));
    }
    s.split(',')
        .map(parse_duration)
        .collect::<Result<_, _>>()
        .map(Schedule)
}

/// `hookrpc serve` settings.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "HOOKRPC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Most live webhooks per account (355 past it).
    #[arg(long, env = "HOOKRPC_MAX_WEBHOOKS", default_value_t = 1000)]
    pub max_webhooks: u32,

    /// Most concurrent calls per API key (399 past it).
    #[arg(long, env = "HOOKRPC_MAX_CONCURRENT_CALLS", default_value_t = 10)]
    pub max_concurrent_calls: usize,

    /// Largest request body in bytes (HTTP 413 past it).
    #[arg(long, env = "HOOKRPC_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: u32,

    /// Most bytes of request bodies held at once, over all connections: each byte from when
    /// it arrives until its call is answered (HTTP 503 past it). At least --max-body-bytes.
    #[arg(long, env = "HOOKRPC_MAX_BODY_MEMORY", default_value_t = 256 * 1024 * 1024)]
    pub max_body_memory: u64,

    /// Longest a request body may take to arrive once its headers have (HTTP 408 past it).
    #[arg(long, env = "HOOKRPC_BODY_TIMEOUT", default_value = "30s", value_parser = parse_period)]
    pub body_timeout: Duration,

    /// Delays before each retry of a failed delivery, then `failed` (±10 % jitter).
    #[arg(long, env = "HOOKRPC_RETRY_SCHEDULE", default_value = "5s,5m,30m,2h,5h", value_parser = parse_schedule)]
    pub retry_schedule: Schedule,

    /// Total time one delivery attempt may take.
    #[arg(long, env = "HOOKRPC_ATTEMPT_TIMEOUT", default_value = "10s", value_parser = parse_period)]
    pub attempt_timeout: Duration,

    /// Time to establish a connection to a receiver.
    #[arg(long, env = "HOOKRPC_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_period)]
    pub connect_timeout: Duration,

    /// Consecutive failed attempts that open a webhook's circuit.
    #[arg(long, env = "HOOKRPC_CIRCUIT_THRESHOLD", default_value_t = 20)]
    pub circuit_threshold: i64,

    /// While a circuit is open, one probe request this often.
    #[arg(long, env = "HOOKRPC_CIRCUIT_PROBE_INTERVAL", default_value = "60s", value_parser = parse_period)]
    pub circuit_probe_interval: Duration,

    /// A webhook whose circuit stays open this long is deactivated (at its next failed probe),
    /// and `webhook.deactivated` is published. 0 never deactivates.
    #[arg(long, env = "HOOKRPC_DISABLE_AFTER", default_value = "5d", value_parser = parse_disable_after)]
    pub disable_after: DisableAfter,

    /// At start, delete live webhooks whose object or event the catalog no longer has (without
    /// it, such webhooks stop the server from starting, named).
    #[arg(long, env = "HOOKRPC_CATALOG_PRUNE", value_parser = BoolishValueParser::new())]
    pub catalog_prune: bool,

    /// Allow deliveries to loopback, private and other non-public addresses (local testing).
    #[arg(long, env = "HOOKRPC_ALLOW_PRIVATE_TARGETS", value_parser = BoolishValueParser::new())]
    pub allow_private_targets: bool,

    /// Most delivery requests in flight at once, over all webhooks. 0: this node delivers
    /// nothing and only answers calls (in a cluster on PostgreSQL, the other nodes deliver).
    #[arg(long, env = "HOOKRPC_DELIVERY_CONCURRENCY", default_value_t = 64)]
    pub delivery_concurrency: usize,

    /// Most delivery requests in flight at once to one webhook: the ceiling of its adaptive
    /// limit, which starts at 4, grows while the receiver answers quickly and cleanly, and
    /// backs off on 429, 5xx, timeouts and slow answers.
    #[arg(long, env = "HOOKRPC_WEBHOOK_CONCURRENCY", default_value_t = 64)]
    pub webhook_concurrency: usize,

    /// How long claimed work stays reserved before another claim may take it (after a crash).
    #[arg(long, env = "HOOKRPC_LEASE", default_value = "60s", value_parser = parse_period)]
    pub lease: Duration,

    /// On SIGINT/SIGTERM, how long in-flight deliveries may take to finish.
    #[arg(long, env = "HOOKRPC_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How long events, their deliveries and attempts are kept once every delivery of the
    /// event is final (succeeded, failed or cancelled), and deleted webhooks once deleted;
    /// then they are removed, in small batches, in the background. 0 keeps everything.
    #[arg(long, env = "HOOKRPC_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub retention: Retention,

    #[command(flatten)]
    pub key: KeyArg,

    /// Read-only database connections.
    #[arg(long, env = "HOOKRPC_READERS", default_value_t = 4)]
    pub readers: usize,

    /// Log format on stderr.
    #[arg(long, env = "HOOKRPC_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// The rules between settings, checked at start (each alone is checked as it is read).
    pub fn check(&self) -> Result<(), String> {
        if self.max_body_memory < u64::from(self.max_body_bytes) {
            // Else a body of the largest size allowed could never be taken in.
            return Err(format!(
                "--max-body-memory ({}) must be at least --max-body-bytes ({})",
                self.max_body_memory, self.max_body_bytes
            ));
        }
        if self.lease / 2 < self.attempt_timeout {
            // A batch is sent only while its whole attempt fits in what is left of its lease,
            // and may wait its turn for the other half: a request still running when its
            // lease ends would be sent again by another node.
            return Err(format!(
                "--lease ({}) must be at least twice --attempt-timeout ({})",
                humantime::format_duration(self.lease),
                humantime::format_duration(self.attempt_timeout)
            ));
        }
        Ok(())
    }

    /// Settings that work but may surprise, said at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(keep) = self.retention.0.filter(|keep| *keep < self.attempt_timeout) {
            // A request may be out for up to its attempt timeout. Cancelled meanwhile (its
            // webhook deactivated or deleted), its delivery is final, and may be removed before
            // the answer comes back to make it `succeeded`. Short retentions are for trying
            // retention out, so this is said rather than refused.
            warnings.push(format!(
                "--retention ({}) is shorter than --attempt-timeout ({}): a delivery cancelled \
                 while its request is out may be removed before the receiver's answer is recorded",
                humantime::format_duration(keep),
                humantime::format_duration(self.attempt_timeout)
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_in_any_unit() {
        let s = parse_schedule("5s,5m,30m,2h,5h").unwrap();
        assert_eq!(s.0[0], Duration::from_secs(5));
        assert_eq!(s.0[4], Duration::from_secs(5 * 3600));
        assert_eq!(
            parse_schedule("10ms, 20ms").unwrap().0[1],
            Duration::from_millis(20)
        );
        assert!(parse_schedule("5x").is_err());
    }

    #[test]
    fn retention_is_a_duration_of_a_second_or_more_or_0_for_ever() {
        assert_eq!(parse_retention("0").unwrap(), Retention(None));
        assert_eq!(parse_retention("0s").unwrap(), Retention(None));
        assert_eq!(
            parse_retention("30d").unwrap(),
            Retention(Some(Duration::from_secs(30 * 86400)))
        );
        assert_eq!(
            parse_retention("2s").unwrap(),
            Retention(Some(Duration::from_secs(2)))
        );
        assert!(parse_retention("500ms").is_err());
        assert!(parse_retention("forever").is_err());
    }

    #[test]
    fn disable_after_is_a_duration_of_a_second_or_more_or_0_for_never() {
        assert_eq!(parse_disable_after("0").unwrap(), DisableAfter(None));
        assert_eq!(
            parse_disable_after("5d").unwrap(),
            DisableAfter(Some(Duration::from_secs(5 * 86400)))
        );
        assert!(parse_disable_after("10ms").is_err());
        assert!(parse_disable_after("soon").is_err());
    }
}
