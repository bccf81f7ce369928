//! Builds the jsonrpsee server and the HTTP layer in front of it: `/health`, `/metrics`, the
//! body limit (413), and the Vision6 dialect rewrite.

use crate::api::{self, App};
use crate::dialect::{self, Prepared};
use crate::error::ApiError;
use crate::metrics;
use crate::store::Store;
use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use jsonrpsee::server::{
    BatchRequestConfig, HttpBody, HttpRequest, HttpResponse, ServerConfig, ServerHandle,
};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Most entries in one batch.
const MAX_BATCH: u32 = 1000;

/// Starts the server; returns its handle and the address it is bound to.
pub async fn start(app: Arc<App>) -> Result<(ServerHandle, SocketAddr), ApiError> {
    let config = app.config.clone();
    let front = Front {
        store: app.store.clone(),
        max_body: config.max_body_bytes as usize,
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
    match (req.method(), req.uri().path()) {
        // HEAD too (the contract names both): hyper sends a HEAD reply's headers only.
        (&Method::GET | &Method::HEAD, "/health") => return Ok(health(&front.store).await),
        (&Method::GET, "/metrics") => return Ok(metrics_page(&front.store).await),
        (&Method::POST, _) if is_json(&req) => {}
        _ => return inner.call(req).await, // 405, 415 and WebSocket upgrades are jsonrpsee's
    }
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|len| len > front.max_body);
    if too_large {
        return Ok(status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let (mut parts, body) = req.into_parts();
    let bytes = match Limited::new(body, front.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ))
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
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
            if parts.status != StatusCode::OK {
                return Ok(Response::from_parts(parts, body));
            }
            let reply: Bytes = body.collect().await?.to_bytes();
            Ok(match dialect::finish(&reply, &plan) {
                Some(bytes) => json_response(StatusCode::OK, bytes),
                None => status(StatusCode::NO_CONTENT, ""),
            })
        }
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
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

async fn metrics_page(store: &Store) -> HttpResponse {
    let (pending, oldest, open) = store.queue_stats().await.unwrap_or((0, 0, 0));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(HttpBody::from(metrics::render(pending, oldest, open)))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR, ""))
}

fn json_response(code: StatusCode, body: Vec<u8>) -> HttpResponse {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(HttpBody::from(body))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR, ""))
}

fn status(code: StatusCode, text: &'static str) -> HttpResponse {
    let mut response = Response::new(HttpBody::from(text));
    *response.status_mut() = code;
    response
}
