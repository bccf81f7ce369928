//! The whole wire surface in one table: each method's name, parameter names (in Vision6
//! positional order), how many are required, the access level it needs, and its handler.
//! Methods are registered from this table rather than through jsonrpsee's `#[rpc]` macro,
//! because the macro answers wrong arity and wrong types with -32602 and silently ignores
//! extra positional params, where our contract says 310 with every problem listed.

mod auth;
mod deliveries;
mod events;
mod stats;
mod webhooks;

pub use auth::{Gate, KEY_CACHE_TTL};

use crate::config::Config;
use crate::error::{ApiError, RequestId};
use crate::metrics;
use crate::model::{Access, Caller};
use crate::search::{self, Criteria, Field};
use crate::store::Store;
use crate::validate::{bind, Args, Checker};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// What every handler can reach.
pub struct App {
    pub store: Store,
    pub config: Arc<Config>,
    pub gate: Gate,
}

/// A method's result as JSON text, serialized once, straight from the handler's data.
pub type Json = Box<RawValue>;
type Reply = Pin<Box<dyn Future<Output = Result<Json, ApiError>> + Send>>;
type Handler = fn(Arc<App>, Caller, Args, Checker) -> Reply;

/// One API method.
pub struct Method {
    pub name: &'static str,
    pub params: &'static [&'static str],
    /// How many of `params`, from the first, must be given.
    pub required: usize,
    pub access: Access,
    handler: Handler,
}

const WEBHOOK_ID: &[&str] = &["api_key", "webhook_id"];
const SEARCH: &[&str] = &[
    "api_key",
    "search_criteria",
    "limit",
    "offset",
    "sort_by",
    "sort_order",
];
const COUNT: &[&str] = &["api_key", "search_criteria"];

macro_rules! method {
    ($name:literal, $params:expr, $required:literal, $access:ident, $handler:path) => {
        Method {
            name: $name,
            params: $params,
            required: $required,
            access: Access::$access,
            handler: |app, caller, args, check| Box::pin($handler(app, caller, args, check)),
        }
    };
}

/// Every method of API.md §3, in one place.
pub const METHODS: &[Method] = &[
    method!(
        "addWebhook",
        &["api_key", "webhook_details"],
        2,
        Full,
        webhooks::add
    ),
    method!(
        "editWebhook",
        &["api_key", "webhook_id", "webhook_details"],
        3,
        Full,
        webhooks::edit
    ),
    method!("deleteWebhook", WEBHOOK_ID, 2, Full, webhooks::delete),
    method!("getWebhookById", WEBHOOK_ID, 2, Standard, webhooks::get),
    method!("searchWebhooks", SEARCH, 1, Standard, webhooks::search),
    method!("countWebhooks", COUNT, 1, Standard, webhooks::count),
    method!(
        "rotateWebhookSecret",
        WEBHOOK_ID,
        2,
        Full,
        webhooks::rotate_secret
    ),
    method!("testWebhook", WEBHOOK_ID, 2, Standard, webhooks::test),
    method!(
        "addEvent",
        &["api_key", "event_details"],
        2,
        Standard,
        events::add
    ),
    method!(
        "addEvents",
        &["api_key", "events"],
        2,
        Standard,
        events::add_many
    ),
    method!(
        "getEventById",
        &["api_key", "event_id"],
        2,
        Standard,
        events::get
    ),
    method!("searchEvents", SEARCH, 1, Standard, events::search),
    method!("countEvents", COUNT, 1, Standard, events::count),
    method!(
        "getDeliveryById",
        &["api_key", "delivery_id"],
        2,
        Standard,
        deliveries::get
    ),
    method!("searchDeliveries", SEARCH, 1, Standard, deliveries::search),
    method!("countDeliveries", COUNT, 1, Standard, deliveries::count),
    method!(
        "retryDelivery",
        &["api_key", "delivery_id"],
        2,
        Full,
        deliveries::retry
    ),
    method!(
        "retryDeliveries",
        COUNT,
        2,
        Full,
        deliveries::retry_matching
    ),
    method!(
        "getDeliveryStats",
        &["api_key", "webhook_id", "since", "until", "interval"],
        1,
        Standard,
        stats::get
    ),
];

/// The OpenRPC document, served by `rpc.discover` as committed, with the object and event
/// enums of the active catalog (with the default catalog: exactly as committed).
pub const OPENRPC: &str = include_str!("../../schema/openrpc.json");

/// Builds the RPC module: every method of the table, plus `rpc.discover`.
pub fn module(app: Arc<App>) -> Result<RpcModule<App>, ApiError> {
    let mut discover: Value = serde_json::from_str(OPENRPC)?;
    crate::catalog::active().describe_in(&mut discover);
    let mut module = RpcModule::from_arc(app);
    let register_error =
        |e: jsonrpsee::core::RegisterMethodError| ApiError::Internal(e.to_string());
    for method in METHODS {
        module
            .register_async_method(method.name, move |params, app, _| {
                let raw = params.as_str().map(str::to_owned);
                async move { call(method, app, raw).await }
            })
            .map_err(register_error)?;
    }
    module
        .register_method("rpc.discover", move |params, _, _| {
            no_params(params.as_str())
                .map_err(|e| e.into_error_object(RequestId(rand::random())))?;
            Ok::<_, ErrorObjectOwned>(discover.clone())
        })
        .map_err(register_error)?;
    Ok(module)
}

/// One call: bind params, authenticate, limit, check access, run, measure, log.
///
/// The call's span is at DEBUG: at the default level it would cost more than many methods'
/// own work. The one line a call logs at INFO and above, its failure, names the method and
/// request id itself.
async fn call(
    method: &'static Method,
    app: Arc<App>,
    raw: Option<String>,
) -> Result<Json, ErrorObjectOwned> {
    let request_id = RequestId(rand::random());
    let span = tracing::debug_span!("rpc", method = method.name, %request_id, account = tracing::field::Empty);
    let started = Instant::now();
    let result = run(method, &app, raw).instrument(span.clone()).await;
    let code = result.as_ref().err().map(ApiError::code);
    let elapsed = started.elapsed();
    metrics::record_call(method.name, code, elapsed);
    let _enter = span.enter();
    let duration_us = elapsed.as_micros() as u64;
    match &result {
        Err(ApiError::Internal(cause)) => {
            tracing::error!(method = method.name, %request_id, code, duration_us, %cause, "call failed")
        }
        _ => tracing::debug!(code, duration_us, "call"),
    }
    result.map_err(|e| e.into_error_object(request_id))
}

async fn run(
    method: &'static Method,
    app: &Arc<App>,
    raw: Option<String>,
) -> Result<Json, ApiError> {
    let mut check = Checker::default();
    let value = read_params(raw.as_deref())?;
    let args = bind(value, raw, method.params, method.required, &mut check)?;
    let key = args
        .get("api_key")
        .and_then(Value::as_str)
        .ok_or(ApiError::InvalidKey)?;
    let (caller, _permit) = app.gate.admit(&app.store, key).await?;
    tracing::Span::current().record("account", caller.account_id);
    if !caller.access.allows(method.access) {
        return Err(ApiError::AccessDenied {
            needed: method.access.as_str(),
        });
    }
    (method.handler)(app.clone(), caller, args, check).await
}

/// The params of a call. jsonrpsee has checked that they are JSON; what can still fail here
/// is serde_json's nesting limit, and that is the caller's input, not our fault.
fn read_params(text: Option<&str>) -> Result<Option<Value>, ApiError> {
    text.map(serde_json::from_str::<Value>)
        .transpose()
        .map_err(|e| ApiError::invalid("params", format!("cannot be read: {e}")))
}

/// `rpc.discover` takes no params: any given are 310, named as any method names them.
fn no_params(text: Option<&str>) -> Result<(), ApiError> {
    let mut check = Checker::default();
    bind(read_params(text)?, None, &[], 0, &mut check)?;
    check.finish()
}

/// The optional params of search* and count*: criteria, paging and sort, checked together.
fn search_args(
    fields: &'static [Field],
    args: &Args,
    mut check: Checker,
) -> Result<(Criteria, i64, i64), ApiError> {
    let limit = check
        .opt_int("limit", args.get("limit"), 0, i64::MAX)
        .unwrap_or(0);
    let offset = check
        .opt_int("offset", args.get("offset"), 0, i64::MAX)
        .unwrap_or(0);
    let sort_by = check.sort_by(args.get("sort_by"));
    let descending = check.sort_order(args.get("sort_order"));
    check.finish()?;
    let criteria = search::parse(
        fields,
        args.get("search_criteria"),
        sort_by.as_deref(),
        descending,
    )?;
    Ok((criteria, limit, offset))
}

/// A handler's result, as the reply will carry it.
fn reply(value: &impl Serialize) -> Result<Json, ApiError> {
    Ok(serde_json::value::to_raw_value(value)?)
}

/// `true`, the reply of every mutation that has no id to return.
fn done() -> Result<Json, ApiError> {
    reply(&true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_takes_the_key_first_and_names_are_unique() {
        let mut names: Vec<_> = METHODS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METHODS.len());
        for m in METHODS {
            assert_eq!(m.params[0], "api_key", "{}", m.name);
            assert!(
                m.required >= 1 && m.required <= m.params.len(),
                "{}",
                m.name
            );
        }
    }
}
