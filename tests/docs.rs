//! docs/api.md is the users' reference, so it cannot fall behind the server: every method the
//! server serves has a section (a heading naming it), every error code the server can answer
//! with has a row in the error table, and every flag of `hookrpc serve` has a row in the
//! configuration table with its environment variable and default. Each test names everything
//! that is missing, not only the first thing.

mod common;
use common::*;
use hookrpc::api::METHODS;
use hookrpc::error::{ApiError, METHOD_NOT_FOUND_V1};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Command;

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md");

/// Read at run time, so that editing the page needs no rebuild of the test.
fn doc() -> String {
    std::fs::read_to_string(DOC_PATH).unwrap_or_else(|e| panic!("{DOC_PATH}: {e}"))
}

/// The names written in backticks on the page's headings (`### addWebhook` style sections).
fn headed_names(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter(|line| line.starts_with('#'))
        .flat_map(|line| line.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect()
}

/// Table rows by their first cell, without backticks: `| `310` | …` → ("310", whole row).
fn rows(doc: &str) -> Vec<(String, &str)> {
    doc.lines()
        .filter(|line| line.trim_start().starts_with('|'))
        .filter_map(|line| {
            let first = line
                .trim_start()
                .trim_start_matches('|')
                .split('|')
                .next()?;
            Some((first.trim().trim_matches('`').to_owned(), line))
        })
        .collect()
}

fn fail_if_missing(what: &str, missing: &[String]) {
    assert!(
        missing.is_empty(),
        "docs/api.md is missing {what}:\n  {}",
        missing.join("\n  ")
    );
}

fn methods_without_section(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let headed = headed_names(&doc());
    names
        .into_iter()
        .filter(|name| !headed.contains(name))
        .map(|name| format!("{name}: no heading naming `{name}`"))
        .collect()
}

#[test]
fn every_method_of_the_method_table_and_the_openrpc_document_has_a_section() {
    let document: Value = serde_json::from_str(include_str!("../schema/openrpc.json")).unwrap();
    let mut names: BTreeSet<String> = METHODS.iter().map(|m| m.name.to_owned()).collect();
    names.extend(
        document["methods"]
            .as_array()
            .expect("methods array")
            .iter()
            .map(|m| m["name"].as_str().expect("method name").to_owned()),
    );
    names.insert("rpc.discover".to_owned());
    fail_if_missing(
        "a section for these methods",
        &methods_without_section(names),
    );
}

#[tokio::test]
async fn every_method_the_running_server_discovers_has_a_section() {
    let server = Server::start(&[]);
    let discovered = server.ok("rpc.discover", json!([])).await;
    let names: Vec<String> = discovered["methods"]
        .as_array()
        .expect("methods array")
        .iter()
        .map(|m| m["name"].as_str().expect("method name").to_owned())
        .collect();
    assert!(names.len() >= METHODS.len(), "rpc.discover: {names:?}");
    fail_if_missing(
        "a section for these discovered methods",
        &methods_without_section(names),
    );
}

/// One value of every [`ApiError`] variant. `variant` has no wildcard arm, so a new variant
/// does not compile until it is given a number there, and the count check below then fails
/// until it is also listed here: no code can be added to the server without this test asking
/// the page for it.
fn every_api_error() -> Vec<ApiError> {
    fn variant(e: &ApiError) -> usize {
        match e {
            ApiError::Internal(_) => 0,
            ApiError::InvalidKey => 1,
            ApiError::InvalidParams(_) => 2,
            ApiError::InvalidSearch(_) => 3,
            ApiError::AccessDenied { .. } => 4,
            ApiError::WebhookNotFound => 5,
            ApiError::DuplicateWebhook => 6,
            ApiError::EventNotFound => 7,
            ApiError::DeliveryNotFound => 8,
            ApiError::WebhookLimit { .. } => 9,
            ApiError::TooManyConcurrent { .. } => 10,
        }
    }
    const VARIANTS: usize = 11;
    let all = vec![
        ApiError::Internal(String::new()),
        ApiError::InvalidKey,
        ApiError::InvalidParams(Vec::new()),
        ApiError::InvalidSearch(String::new()),
        ApiError::AccessDenied { needed: "full" },
        ApiError::WebhookNotFound,
        ApiError::DuplicateWebhook,
        ApiError::EventNotFound,
        ApiError::DeliveryNotFound,
        ApiError::WebhookLimit { limit: 1 },
        ApiError::TooManyConcurrent { limit: 1 },
    ];
    let seen: BTreeSet<usize> = all.iter().map(variant).collect();
    assert_eq!(
        seen,
        (0..VARIANTS).collect(),
        "every_api_error must hold one value of each ApiError variant"
    );
    all
}

/// Codes of the protocol layer (src/dialect.rs and jsonrpsee), which no ApiError carries:
/// JSON-RPC 2.0's parse error, invalid request and method not found, and Vision6's method
/// not found. (Vision6's parse error is 100, an ApiError code.)
const PROTOCOL_CODES: &[i32] = &[-32700, -32600, -32601, METHOD_NOT_FOUND_V1];

#[test]
fn every_error_code_has_a_row_with_its_message() {
    let doc = doc();
    let rows = rows(&doc);
    let row = |code: i32| {
        rows.iter()
            .find(|(first, _)| *first == code.to_string())
            .map(|(_, row)| *row)
    };
    let mut missing = Vec::new();
    for e in every_api_error() {
        match row(e.code()) {
            None => missing.push(format!("{}: no table row for this code", e.code())),
            Some(row) if !row.contains(e.message()) => missing.push(format!(
                "{}: its row does not give the message {:?}",
                e.code(),
                e.message()
            )),
            Some(_) => {}
        }
    }
    for &code in PROTOCOL_CODES {
        if row(code).is_none() {
            missing.push(format!("{code}: no table row for this code"));
        }
    }
    fail_if_missing("these error codes", &missing);
}

/// A long flag of `hookrpc serve --help`, with its environment variable and default.
#[derive(Debug, Default)]
struct Flag {
    name: String,
    env: Option<String>,
    default: Option<String>,
}

/// Reads the flags out of clap's help text: an option line (`      --db <DB>`, or
/// `  -h, --help`) starts a flag, and the `[env: X=]` and `[default: Y]` that follow belong to it.
fn serve_flags() -> Vec<Flag> {
    let out = Command::new(binary())
        .args(["serve", "--help"])
        .output()
        .expect("run hookrpc serve --help");
    assert!(out.status.success(), "hookrpc serve --help failed");
    let help = String::from_utf8(out.stdout).expect("help is UTF-8");
    let bracket = |text: &str, tag: &str| -> Option<String> {
        let start = text.find(tag)? + tag.len();
        let end = text[start..].find(']')? + start;
        Some(text[start..end].trim_end_matches('=').to_owned())
    };
    let mut flags: Vec<Flag> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let option = trimmed
            .strip_prefix("--")
            .map(|rest| rest.to_owned())
            .or_else(|| {
                let after_short = trimmed.strip_prefix('-')?.split_once(", --")?.1;
                Some(after_short.to_owned())
            });
        if let Some(rest) = option {
            let name = rest.split([' ', '=']).next().unwrap_or_default();
            flags.push(Flag {
                name: format!("--{name}"),
                ..Flag::default()
            });
        }
        if let Some(flag) = flags.last_mut() {
            if let Some(env) = bracket(line, "[env: ") {
                flag.env = Some(env);
            }
            if let Some(default) = bracket(line, "[default: ") {
                flag.default = Some(default);
            }
        }
    }
    flags.retain(|f| f.name != "--help" && f.name != "--version");
    assert!(
        flags.len() >= 10 && flags.iter().all(|f| f.env.is_some()),
        "could not read the flags from `hookrpc serve --help`:\n{help}\nread: {flags:?}"
    );
    flags
}

#[test]
fn every_serve_flag_has_a_row_with_its_environment_variable_and_default() {
    let doc = doc();
    let rows = rows(&doc);
    let mut missing = Vec::new();
    for flag in serve_flags() {
        let Some((_, row)) = rows.iter().find(|(first, _)| *first == flag.name) else {
            missing.push(format!("{}: no configuration table row", flag.name));
            continue;
        };
        for (what, value) in [("variable", &flag.env), ("default", &flag.default)] {
            if let Some(value) = value {
                if !row.contains(&format!("`{value}`")) {
                    missing.push(format!(
                        "{}: its row does not give the {what} `{value}`",
                        flag.name
                    ));
                }
            }
        }
    }
    fail_if_missing("these flags of `hookrpc serve`", &missing);
}

#[test]
fn the_docs_link_only_inside_the_repository() {
    let doc = doc();
    assert!(
        !doc.contains("../shared") && !doc.contains("API.md"),
        "docs/api.md must not point at a contract users do not have"
    );
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    assert!(
        readme.contains("docs/api.md"),
        "README.md should link the API reference"
    );
    assert!(
        !readme.contains("../shared"),
        "README.md links outside the repository"
    );
}
