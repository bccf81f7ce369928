//! Event handlers: intake answers only after the events and their deliveries are committed.

use super::{reply, search_args, App, Json};
use crate::error::ApiError;
use crate::model::Caller;
use crate::store::EVENT_FIELDS;
use crate::validate::{Args, Checker};
use std::sync::Arc;

pub async fn add(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let event = check.event_details("", args.get("event_details"), args.raw("event_details"));
    check.finish()?;
    let ids = app.store.add_events(caller.account_id, vec![event]).await?;
    reply(&ids[0])
}

pub async fn add_many(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let events = check.events(args.get("events"), args.raw("events"));
    check.finish()?;
    reply(&app.store.add_events(caller.account_id, events).await?)
}

pub async fn get(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let id = check.id("event_id", args.get("event_id"));
    check.finish()?;
    reply(&app.store.event(caller.account_id, id).await?)
}

pub async fn search(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    check: Checker,
) -> Result<Json, ApiError> {
    let (criteria, limit, offset) = search_args(EVENT_FIELDS, &args, check)?;
    reply(
        &app.store
            .search_events(caller.account_id, criteria, limit, offset)
            .await?,
    )
}

pub async fn count(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    check: Checker,
) -> Result<Json, ApiError> {
    let (criteria, _, _) = search_args(EVENT_FIELDS, &args, check)?;
    reply(&app.store.count_events(caller.account_id, criteria).await?)
}
