//! The one error type of the API. Every fallible path ends in an [`ApiError`]; the mapping to
//! Vision6 codes and their fixed messages lives here and nowhere else.

use jsonrpsee::types::ErrorObjectOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// One problem found by the validator: which field, and what is wrong with it in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything a call can fail with. `Internal` carries the cause for the log only: the client
/// sees the fixed message and a request id, never SQL or paths.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Internal Server Error: {0}")]
    Internal(String),
    #[error("Authorisation Failed - Invalid API Key")]
    InvalidKey,
    #[error("Invalid Method Parameters")]
    InvalidParams(Vec<Problem>),
    #[error("Invalid Search Parameter Format")]
    InvalidSearch(String),
    #[error("Access Denied")]
    AccessDenied { needed: &'static str },
    #[error("Unable to Load Webhook")]
    WebhookNotFound,
    #[error("Duplicate Webhook details not allowed")]
    DuplicateWebhook,
    #[error("Unable to Load Event")]
    EventNotFound,
    #[error("Unable to Load Delivery")]
    DeliveryNotFound,
    #[error("Webhook limit reached")]
    WebhookLimit { limit: u32 },
    #[error("You have reached the maximum number of allowed concurrent API requests")]
    TooManyConcurrent { limit: usize },
}

/// Names one call in the logs and in the `data` of its 100 error, so that a user can quote it.
#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

pub const INTERNAL: i32 = 100;
/// Vision6's code for an unknown method (JSON-RPC 2.0 keeps -32601).
pub const METHOD_NOT_FOUND_V1: i32 = 104;

impl ApiError {
    /// A single-problem 310, the common case for one bad parameter.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidParams(vec![Problem::new(field, message)])
    }

    pub fn code(&self) -> i32 {
        match self {
            Self::Internal(_) => INTERNAL,
            Self::InvalidKey => 300,
            Self::InvalidParams(_) => 310,
            Self::InvalidSearch(_) => 311,
            Self::AccessDenied { .. } => 321,
            Self::WebhookNotFound => 350,
            Self::DuplicateWebhook => 351,
            Self::EventNotFound => 352,
            Self::DeliveryNotFound => 353,
            Self::WebhookLimit { .. } => 355,
            Self::TooManyConcurrent { .. } => 399,
        }
    }

    /// The fixed Vision6 message (never the internal cause).
    pub fn message(&self) -> &'static str {
        match self {
            Self::Internal(_) => "Internal Server Error",
            Self::InvalidKey => "Authorisation Failed - Invalid API Key",
            Self::InvalidParams(_) => "Invalid Method Parameters",
            Self::InvalidSearch(_) => "Invalid Search Parameter Format",
            Self::AccessDenied { .. } => "Access Denied",
            Self::WebhookNotFound => "Unable to Load Webhook",
            Self::DuplicateWebhook => "Duplicate Webhook details not allowed",
            Self::EventNotFound => "Unable to Load Event",
            Self::DeliveryNotFound => "Unable to Load Delivery",
            Self::WebhookLimit { .. } => "Webhook limit reached",
            Self::TooManyConcurrent { .. } => {
                "You have reached the maximum number of allowed concurrent API requests"
            }
        }
    }

    fn data(&self, request_id: RequestId) -> Option<Value> {
        match self {
            Self::Internal(_) => Some(json!({ "request_id": request_id.to_string() })),
            Self::InvalidParams(problems) => Some(json!(problems)),
            Self::InvalidSearch(detail) => Some(json!(detail)),
            Self::AccessDenied { needed } => Some(json!({ "required_access": needed })),
            Self::WebhookLimit { limit } => Some(json!({ "limit": limit })),
            Self::TooManyConcurrent { limit } => Some(json!({ "limit": limit })),
            _ => None,
        }
    }

    /// The wire form; `request_id` goes into `data` of a 100 so a user can quote it.
    pub fn into_error_object(self, request_id: RequestId) -> ErrorObjectOwned {
        let data = self.data(request_id);
        ErrorObjectOwned::owned(self.code(), self.message(), data)
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(format!("json: {e}"))
    }
}
