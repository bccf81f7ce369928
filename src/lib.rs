//! hookrpc: a self-hosted webhook service with a Vision6-style JSON-RPC 2.0 API.
//!
//! Data flows one way: request → [`dialect`] → auth → [`validate`] → [`store`] → (commit) →
//! [`delivery`] engine → receiver → store.

pub mod api;
pub mod catalog;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod dialect;
pub mod error;
pub mod maintenance;
pub mod metrics;
pub mod model;
pub mod search;
pub mod server;
pub mod store;
pub mod ui;
pub mod validate;
