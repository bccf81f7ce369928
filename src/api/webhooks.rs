//! Webhook handlers: validate, call the store, shape the reply.

use super::{done, reply, search_args, App, Json};
use crate::delivery::signing;
use crate::error::ApiError;
use crate::model::Caller;
use crate::store::WEBHOOK_FIELDS;
use crate::validate::{Args, Checker};
use std::sync::Arc;

pub async fn add(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let patch = check.webhook_details(
        args.get("webhook_details"),
        args.raw("webhook_details"),
        true,
    );
    check.finish()?;
    let settings = patch.into_new(signing::generate_secret());
    let id = app
        .store
        .add_webhook(caller.account_id, settings, app.config.max_webhooks)
        .await?;
    reply(&id)
}

pub async fn edit(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let id = check.id("webhook_id", args.get("webhook_id"));
    let patch = check.webhook_details(
        args.get("webhook_details"),
        args.raw("webhook_details"),
        false,
    );
    check.finish()?;
    app.store
        .edit_webhook(caller.account_id, id, |current| {
            let merged = patch.apply(current);
            let mut check = Checker::default();
            check.webhook_settings(&merged);
            check.finish()?;
            Ok(merged)
        })
        .await?;
    done()
}

pub async fn delete(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let id = check.id("webhook_id", args.get("webhook_id"));
    check.finish()?;
    app.store.delete_webhook(caller.account_id, id).await?;
    done()
}

pub async fn get(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let id = check.id("webhook_id", args.get("webhook_id"));
    check.finish()?;
    reply(
        &app.store
            .webhook(caller.account_id, id)
            .await?
            .view(caller.access),
    )
}

pub async fn search(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    check: Checker,
) -> Result<Json, ApiError> {
    let (criteria, limit, offset) = search_args(WEBHOOK_FIELDS, &args, check)?;
    let found = app
        .store
        .search_webhooks(caller.account_id, criteria, limit, offset)
        .await?;
    let views: Vec<_> = found.iter().map(|w| w.view(caller.access)).collect();
    reply(&views)
}

pub async fn count(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    check: Checker,
) -> Result<Json, ApiError> {
    let (criteria, _, _) = search_args(WEBHOOK_FIELDS, &args, check)?;
    reply(
        &app.store
            .count_webhooks(caller.account_id, criteria)
            .await?,
    )
}

pub async fn rotate_secret(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let id = check.id("webhook_id", args.get("webhook_id"));
    check.finish()?;
    let secret = app
        .store
        .rotate_secret(caller.account_id, id, signing::generate_secret())
        .await?;
    reply(&secret)
}

pub async fn test(
    app: Arc<App>,
    caller: Caller,
    args: Args,
    mut check: Checker,
) -> Result<Json, ApiError> {
    let id = check.id("webhook_id", args.get("webhook_id"));
    check.finish()?;
    reply(&app.store.add_ping(caller.account_id, id).await?)
}
