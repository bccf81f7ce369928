//! Sends one batch: builds the request of API.md §4 (body, headers, signature) and turns
//! whatever happens into an [`Attempt`] with a reason a person understands.

use super::guard::{self, GuardedResolver, Refused};
use super::{retry, signing};
use crate::config::Config;
use crate::model::Claim;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::error::Error as _;
use std::time::{Duration, Instant};

/// Most of a receiver's reply kept with the attempt.
const RESPONSE_BODY_BYTES: usize = 4 * 1024;

/// What one request came to.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub duration: Duration,
    pub status: Option<u16>,
    /// None on success (2xx).
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// From a 429 or 503.
    pub retry_after: Option<Duration>,
    /// 410 Gone: stop sending to this webhook.
    pub gone: bool,
}

impl Attempt {
    /// What this answer says about the receiver's load.
    pub fn signal(&self) -> retry::Signal {
        match (self.status, &self.error) {
            (_, None) => retry::Signal::Clean(self.duration),
            (Some(429 | 500..), _) | (None, _) => retry::Signal::Overloaded,
            (Some(_), _) => retry::Signal::Neutral,
        }
    }
}

pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    timeout: Duration,
}

impl Sender {
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("hookrpc/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.attempt_timeout)
            .tcp_nodelay(true)
            // Connections are pooled per host, for every webhook on it: room for as many
            // idle ones as could be in flight at once, or webhooks sharing a host would close
            // and reopen connections all the time.
            .pool_max_idle_per_host(config.delivery_concurrency.max(1));
        if !config.allow_private_targets {
            builder = builder.dns_resolver(GuardedResolver);
        }
        Ok(Self {
            client: builder.build()?,
            allow_private: config.allow_private_targets,
            timeout: config.attempt_timeout,
        })
    }

    pub async fn send(&self, claim: &Claim) -> Attempt {
        let started = Instant::now();
        let mut attempt = match self.request(claim).await {
            Ok(attempt) => attempt,
            Err(error) => Attempt {
                duration: Duration::ZERO,
                status: None,
                error: Some(error),
                response_body: None,
                retry_after: None,
                gone: false,
            },
        };
        attempt.duration = started.elapsed();
        attempt
    }

    async fn request(&self, claim: &Claim) -> Result<Attempt, String> {
        let target = &claim.target;
        let url = url::Url::parse(&target.url).map_err(|e| format!("invalid url: {e}"))?;
        guard::check_reserved_name(&url)?;
        if !self.allow_private {
            guard::check_literal(&url).map_err(|e| e.to_string())?;
        }
        let items: Vec<&serde_json::value::RawValue> =
            claim.deliveries.iter().map(|d| &*d.item).collect();
        let body = serde_json::to_vec(&items).map_err(|e| e.to_string())?;
        let msg_id = message_id(claim);
        let timestamp = crate::model::now_secs();
        let mut headers = HeaderMap::new();
        for h in &target.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(&h.name),
                HeaderValue::try_from(&h.value),
            ) {
                headers.append(name, value);
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let signature = signing::signature_header(&target.secrets, &msg_id, timestamp, &body);
        for (name, value) in [
            ("webhook-id", msg_id),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ] {
            headers.insert(
                name,
                HeaderValue::try_from(value).map_err(|e| e.to_string())?,
            );
        }
        let mut request = self.client.post(url).headers(headers).body(body);
        if let Some(auth) = &target.auth {
            request = request.basic_auth(&auth.username, Some(&auth.password));
        }
        let response = request.send().await.map_err(|e| self.describe(&e))?;
        let status = response.status();
        let retry_after = retry_after(status, response.headers());
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let response_body = read_prefix(response).await;
        Ok(Attempt {
            duration: Duration::ZERO,
            status: Some(status.as_u16()),
            error: outcome_error(status, location.as_deref()),
            response_body,
            retry_after,
            gone: status == StatusCode::GONE,
        })
    }

    /// A transport failure in words.
    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("timeout of {}ms exceeded", self.timeout.as_millis());
        }
        let mut source = e.source();
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<Refused>() {
                return refused.to_string();
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                    std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
                    std::io::ErrorKind::TimedOut => {
                        return format!("timeout of {}ms exceeded", self.timeout.as_millis())
                    }
                    _ => {}
                }
            }
            source = cause.source();
        }
        let mut root = e.source();
        while let Some(deeper) = root.and_then(|c| c.source()) {
            root = Some(deeper);
        }
        match root.map(|c| c.to_string()) {
            Some(root) if e.is_connect() => format!("connection failed: {root}"),
            Some(root) => format!("request failed: {root}"),
            None => format!("request failed: {e}"),
        }
    }
}

/// Stable across retries of the same request contents: derived from the deliveries carried.
fn message_id(claim: &Claim) -> String {
    let mut hash = Sha256::new();
    for d in &claim.deliveries {
        hash.update(d.id.to_le_bytes());
    }
    format!("msg_{}", &hex::encode(hash.finalize())[..24])
}

fn outcome_error(status: StatusCode, location: Option<&str>) -> Option<String> {
    if status.is_success() {
        None
    } else if status.is_redirection() {
        Some(format!(
            "redirect not followed: HTTP {} to {}",
            status.as_u16(),
            location.unwrap_or("(no location)")
        ))
    } else {
        Some(format!("HTTP {}", status.as_u16()))
    }
}

fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// The first 4 KiB of the reply, lossy UTF-8; the rest is not read.
async fn read_prefix(mut response: reqwest::Response) -> Option<String> {
    let mut kept = Vec::new();
    while kept.len() < RESPONSE_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(RESPONSE_BODY_BYTES);
    (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned())
}
