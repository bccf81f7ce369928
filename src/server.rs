//! Builds the jsonrpsee server and the HTTP layer in front of it: `/health`, `/metrics`, the
//! dashboard under `/ui/`, the body's limit (413), deadline (408) and memory (503), the Vision6
//! dialect rewrite, and transport the way PHP servers do it: any POST (but to the dashboard) is
//! a call whatever its Content-Type, every reply is `application/json; charset=utf-8`, and
//! transport faults (405, 408, 413, 503) say why in JSON.

use crate::api::{self, App};
use crate::dialect::{self, Prepared};
use crate::error::ApiError;
use crate::metrics;
use crate::store::Store;
use crate::ui;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use jsonrpsee::server::{
    BatchRequestConfig, HttpBody, HttpRequest, HttpResponse, ServerConfig, ServerHandle,
};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Most entries in one batch.
const MAX_BATCH: u32 = 1000;

/// The Content-Type of every reply to a call, whatever the dialect or outcome: clients that
/// check it (and decode by its charset) must never see anything else.
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Starts the server; returns its handle and the address it is bound to.
pub async fn start(app: Arc<App>) -> Result<(ServerHandle, SocketAddr), ApiError> {
    let config = app.config.clone();
    let body_memory = config.max_body_memory.min(Semaphore::MAX_PERMITS as u64) as usize;
    let front = Front {
        store: app.store.clone(),
        max_body: config.max_body_bytes as usize,
        body_timeout: config.body_timeout,
        body_memory: Arc::new(Semaphore::new(body_memory)),
        body_memory_total: body_memory,
    };
    let server_config = ServerConfig::builder()
        // The rewrite can grow a body a little; our own limit above is the one clients meet.
        .max_request_body_size(config.max_body_bytes.saturating_mul(2))
        .max_response_body_size(u32::MAX)
        // jsonrpsee's own limit counts in-flight HTTP requests and answers 429: keep it out
        // of the way, our per-key 399 is the limit clients should meet.
        .max_connections(100_000)
        .set_batch_request_config(BatchRequestConfig::Limit(MAX_BATCH))
        .build();
    let server = jsonrpsee::server::Server::builder()
        .set_config(server_config)
        .set_http_middleware(tower::ServiceBuilder::new().layer(front))
        .build(config.listen)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = server
        .local_addr()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let handle = server.start(api::module(app)?);
    Ok((handle, addr))
}

/// The HTTP layer in front of jsonrpsee.
#[derive(Clone)]
struct Front {
    store: Store,
    max_body: usize,
    body_timeout: std::time::Duration,
    /// One permit per byte of --max-body-memory: without a bound, clients that send most of a
    /// large body, then stall, hold a body's worth of memory each until the deadline, and
    /// enough of them exhaust the machine without any key.
    body_memory: Arc<Semaphore>,
    body_memory_total: usize,
}

impl<S> Layer<S> for Front {
    type Service = FrontService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FrontService {
            inner,
            front: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct FrontService<S> {
    inner: S,
    front: Front,
}

impl<S> Service<HttpRequest> for FrontService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        // The clone that was polled ready is the one to use (tower's usual swap).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let front = self.front.clone();
        Box::pin(handle(front, inner, req))
    }
}

async fn handle<S>(front: Front, mut inner: S, req: HttpRequest) -> Result<HttpResponse, BoxError>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError>,
{
    let path = req.uri().path();
    if ui::owns(path) {
        // The dashboard's paths are never calls, whatever the verb (API.md §1).
        return Ok(match *req.method() {
            Method::GET | Method::HEAD => ui::get(path, req.headers()),
            _ => not_allowed("the dashboard under /ui/ is read with GET", "GET, HEAD"),
        });
    }
    match (req.method(), path) {
        // HEAD too (the contract names both): hyper sends a HEAD reply's headers only.
        (&Method::GET | &Method::HEAD, "/health") => return Ok(health(&front.store).await),
        (&Method::GET, "/metrics") => return Ok(metrics_page(&front).await),
        (&Method::POST, _) => {}
        _ => {
            // WebSocket upgrades are jsonrpsee's; anything else it refuses with a text/plain
            // 405, which becomes ours in JSON.
            let response = inner.call(req).await?;
            if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                return Ok(not_allowed(
                    "JSON-RPC calls are POST requests; GET serves /health, /metrics and /ui/ only",
                    "POST",
                ));
            }
            return Ok(response);
        }
    }
    let mut response = call(front, inner, req).await?;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    Ok(response)
}

/// A POST: a call, whatever its Content-Type says, as PHP servers take one (they read the body
/// and json_decode it). tinyrpc sends `text/plain`, PHP's curl sends form-urlencoded when a
/// header is forgotten; a body that is no JSON is a parse error, answered as one.
async fn call<S>(front: Front, mut inner: S, req: HttpRequest) -> Result<HttpResponse, BoxError>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError>,
{
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    // A client that waits for `100 Continue` sends nothing until the body is read: it reads
    // the 413 at once, and need not send a body only to have it thrown away.
    let waits_to_send = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (mut parts, mut body) = req.into_parts();
    // The whole body, kept or thrown away, arrives by then: a body that stops arriving would
    // hold its connection for ever.
    let deadline = tokio::time::Instant::now() + front.body_timeout;
    if declared.is_some_and(|len| len > front.max_body as u64) {
        if declared.is_some_and(|len| len <= DISCARD_LIMIT) && !waits_to_send {
            discard(&mut body, deadline).await;
        }
        return Ok(too_large(front.max_body));
    }
    // The room is held until the call is answered: its body, and what is made of it, are in
    // memory until then.
    let (bytes, _room) = match take_in(&front, &mut body, deadline).await {
        Ok(taken) => taken,
        Err(Untaken::TooLarge) => {
            discard(&mut body, deadline).await;
            return Ok(too_large(front.max_body));
        }
        // Answered at once and closed, the rest unread: reading it, even to throw it away,
        // would keep the connection's buffers in memory, which is what the bound is for.
        Err(Untaken::NoRoom) => return Ok(too_busy()),
        Err(Untaken::TooSlow) => return Ok(too_slow(front.body_timeout)),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    // jsonrpsee answers anything but a few spellings of application/json with 415.
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // jsonrpsee answers HTTP 400 when the first 128 bytes are all whitespace.
    let body = bytes.trim_ascii_start();
    match dialect::prepare(body) {
        Prepared::PassThrough => {
            inner
                .call(HttpRequest::from_parts(
                    parts,
                    HttpBody::from(body.to_vec()),
                ))
                .await
        }
        Prepared::ParseError(reply) => Ok(json_response(StatusCode::OK, reply)),
        Prepared::Rewritten(body, plan) => {
            let response = inner
                .call(HttpRequest::from_parts(parts, HttpBody::from(body)))
                .await?;
            let (parts, body) = response.into_parts();
            if parts.status == StatusCode::PAYLOAD_TOO_LARGE {
                // The rewrite grew the body past jsonrpsee's room: the same fault as ours,
                // told the same way (jsonrpsee's own words come as a 2.0 reply).
                return Ok(too_large(front.max_body));
            }
            if parts.status != StatusCode::OK {
                return Ok(Response::from_parts(parts, body));
            }
            let reply: Bytes = body.collect().await?.to_bytes();
            // Nothing to answer (notifications only) is still HTTP 200: jsonrpclib-pelix and
            // others treat a 204 as a failed call.
            let bytes = dialect::finish(&reply, &plan).unwrap_or_default();
            Ok(json_response(StatusCode::OK, bytes))
        }
    }
}

/// Why a body was not taken in.
enum Untaken {
    /// Over --max-body-bytes (or cut off).
    TooLarge,
    /// The bodies being read and served hold --max-body-memory.
    NoRoom,
    /// Not all there by the deadline.
    TooSlow,
}

/// Reads `body` whole by `deadline`, taking room from --max-body-memory for each byte as it
/// arrives (not as the headers announce it: a client that sends headers and nothing more holds
/// nothing). Returns the body and its room.
async fn take_in(
    front: &Front,
    body: &mut HttpBody,
    deadline: tokio::time::Instant,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Untaken> {
    let read = async {
        let mut kept = Vec::new();
        let mut room: Option<OwnedSemaphorePermit> = None;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| Untaken::TooLarge)?.into_data() else {
                continue; // trailers
            };
            if kept.len() + data.len() > front.max_body {
                return Err(Untaken::TooLarge);
            }
            let more = Arc::clone(&front.body_memory)
                .try_acquire_many_owned(data.len() as u32)
                .map_err(|_| Untaken::NoRoom)?;
            match &mut room {
                Some(room) => room.merge(more),
                None => room = Some(more),
            }
            kept.extend_from_slice(&data);
        }
        Ok((Bytes::from(kept), room))
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or(Err(Untaken::TooSlow))
}

/// Most of an oversized body read (and thrown away) before the 413 is sent. Most clients send
/// their whole body before they read a reply; were the server to close the connection with the
/// body unread, the kernel would reset it and such a client would see a broken pipe instead of
/// the 413. Past this much, or the body's deadline (`--body-timeout`), the connection is closed
/// under the client after all.
const DISCARD_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads what is left of `body`, up to [`DISCARD_LIMIT`] bytes and until `deadline` at most,
/// keeping none of it.
async fn discard(body: &mut HttpBody, deadline: tokio::time::Instant) {
    let read_to_the_end = async {
        let mut read = 0u64;
        while read <= DISCARD_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |data| data.len() as u64),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, read_to_the_end).await;
}

/// 200 while the database answers and takes writes; 503 with the reason otherwise (for an
/// operator: the reason is SQLite's message, e.g. "database or disk is full").
async fn health(store: &Store) -> HttpResponse {
    match store.health().await {
        Ok(()) => json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()),
        Err(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "reason": reason})
                .to_string()
                .into_bytes(),
        ),
    }
}

async fn metrics_page(front: &Front) -> HttpResponse {
    let (pending, oldest, open) = front.store.queue_stats().await.unwrap_or((0, 0, 0));
    let bodies = front.body_memory_total - front.body_memory.available_permits();
    let text = metrics::render(pending, oldest, open, bodies);
    let mut response = Response::new(HttpBody::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

fn json_response(code: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(HttpBody::from(body));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    response
}

/// A transport fault, told in JSON: no `jsonrpc` member and no id, since it answers no
/// request of either dialect; its code is the HTTP status.
fn transport_fault(code: StatusCode, why: &str) -> HttpResponse {
    let body = serde_json::json!({"error": {
        "code": code.as_u16(),
        "message": code.canonical_reason().unwrap_or_default(),
        "data": why,
    }});
    json_response(code, body.to_string().into_bytes())
}

fn too_large(limit: usize) -> HttpResponse {
    transport_fault(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "the request body is larger than {limit} bytes, this server's limit (--max-body-bytes)"
        ),
    )
}

/// 503: the bodies being read and served already hold --max-body-memory. The connection is
/// closed: the body may not have been read.
fn too_busy() -> HttpResponse {
    let mut response = transport_fault(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server holds as many request bodies as it may at once (--max-body-memory); try again shortly",
    );
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// 408: the body did not arrive in time. The connection is closed, since the rest of the body
/// may still come and would be read as the next request.
fn too_slow(limit: std::time::Duration) -> HttpResponse {
    let mut response = transport_fault(
        StatusCode::REQUEST_TIMEOUT,
        &format!(
            "the request body did not arrive within {}, this server's limit (--body-timeout)",
            humantime::format_duration(limit)
        ),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// 405, saying `why` and which verbs the path takes.
fn not_allowed(why: &str, allow: &'static str) -> HttpResponse {
    let mut response = transport_fault(StatusCode::METHOD_NOT_ALLOWED, why);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
