//! Delivery handlers: what happened to each event at each webhook, and a manual retry.

use super::{done, reply, search_args, App, Json};
use crate::error::ApiError;
use crate::model::Caller;
use crate::search;
use crate::store::DELIVERY_FIELDS;
use crate::validate::{Args, Checker};
use std::sync::Arc;

pub async fn get(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let id = check.id("delivery_id", args.get("delivery_id"));
    check.finish()?;
    reply(&app.store.delivery(caller.account_id, id).await?)
}

pub async fn search(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    check: Checker,
) -> Result<Json, ApiError> {
    let (criteria, limit, offset) = search_args(DELIVERY_FIELDS, &args, check)?;
    reply(
        &app.store
            .search_deliveries(caller.account_id, criteria, limit, offset)
            .await?,
    )
}

pub async fn count(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    check: Checker,
) -> Result<Json, ApiError> {
    let (criteria, _, _) = search_args(DELIVERY_FIELDS, &args, check)?;
    reply(
        &app.store
            .count_deliveries(caller.account_id, criteria)
            .await?,
    )
}

/// `retryDeliveries`: a replay of every failed delivery the criteria match.
pub async fn retry_matching(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    check: Checker,
) -> Result<Json, ApiError> {
    check.finish()?;
    let criteria = search::parse(DELIVERY_FIELDS, args.get("search_criteria"), None, false)?;
    // Failed ones only, unless the criteria say which statuses (then cancelled ones qualify).
    let with_cancelled = criteria.names("status");
    reply(
        &app.store
            .retry_deliveries(caller.account_id, criteria, with_cancelled)
            .await?,
    )
}

pub async fn retry(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let id = check.id("delivery_id", args.get("delivery_id"));
    check.finish()?;
    app.store.retry_delivery(caller.account_id, id).await?;
    done()
}
