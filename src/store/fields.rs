//! What each search may filter and sort by: the API's field names, and the SQL expression
//! behind each (plain SQL that every backend reads alike).

use crate::search::{Field, Kind};

/// The fields `searchWebhooks` and `countWebhooks` accept.
pub const WEBHOOK_FIELDS: &[Field] = &[
    Field {
        name: "id",
        column: "id",
        kind: Kind::Int,
    },
    Field {
        name: "name",
        column: "name",
        kind: Kind::Text,
    },
    Field {
        name: "description",
        column: "description",
        kind: Kind::Text,
    },
    Field {
        name: "object",
        column: "object",
        kind: Kind::Text,
    },
    // Webhooks are found by an event they follow; sorted by their `events` as stored (a JSON
    // array: webhooks of one event come in the order of that event's name).
    Field {
        name: "event",
        column: "events",
        kind: Kind::Followed,
    },
    Field {
        name: "list_id",
        column: "list_id",
        kind: Kind::Int,
    },
    Field {
        name: "url",
        column: "url",
        kind: Kind::Text,
    },
    Field {
        name: "is_active",
        column: "is_active",
        kind: Kind::Bool,
    },
    Field {
        name: "batch_size",
        column: "batch_size",
        kind: Kind::Int,
    },
    Field {
        name: "circuit_state",
        column: "circuit_state",
        kind: Kind::Text,
    },
    Field {
        name: "consecutive_failures",
        column: "consecutive_failures",
        kind: Kind::Int,
    },
    Field {
        name: "last_success_time",
        column: "last_success_time",
        kind: Kind::Int,
    },
    Field {
        name: "creation_time",
        column: "creation_time",
        kind: Kind::Int,
    },
    Field {
        name: "last_modified_time",
        column: "last_modified_time",
        kind: Kind::Int,
    },
];

pub const EVENT_FIELDS: &[Field] = &[
    Field {
        name: "id",
        column: "id",
        kind: Kind::Int,
    },
    Field {
        name: "object",
        column: "object",
        kind: Kind::Text,
    },
    Field {
        name: "event",
        column: "event",
        kind: Kind::Text,
    },
    Field {
        name: "list_id",
        column: "list_id",
        kind: Kind::Int,
    },
    Field {
        name: "contact_id",
        column: "contact_id",
        kind: Kind::Int,
    },
    Field {
        name: "idempotency_key",
        column: "idempotency_key",
        kind: Kind::Text,
    },
    Field {
        name: "creation_time",
        column: "creation_time",
        kind: Kind::Int,
    },
    Field {
        name: "delivery_count",
        column: "delivery_count",
        kind: Kind::Int,
    },
];

pub const DELIVERY_FIELDS: &[Field] = &[
    Field {
        name: "id",
        column: "id",
        kind: Kind::Int,
    },
    Field {
        name: "webhook_id",
        column: "webhook_id",
        kind: Kind::Int,
    },
    Field {
        name: "event_id",
        column: "event_id",
        kind: Kind::Int,
    },
    Field {
        name: "status",
        column: "status",
        kind: Kind::Text,
    },
    Field {
        name: "attempt_count",
        column: "attempt_count",
        kind: Kind::Int,
    },
    Field {
        name: "next_attempt_time",
        column: "(CASE WHEN status = 'pending' THEN due_ms / 1000 END)",
        kind: Kind::Int,
    },
    Field {
        name: "last_attempt_time",
        column: "last_attempt_time",
        kind: Kind::Int,
    },
    Field {
        name: "last_status_code",
        column: "last_status_code",
        kind: Kind::Int,
    },
    Field {
        name: "last_error",
        column: "last_error",
        kind: Kind::Text,
    },
    Field {
        name: "creation_time",
        column: "creation_time",
        kind: Kind::Int,
    },
];
