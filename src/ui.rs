//! The dashboard (API.md §11): the plain files of `ui/`, built into the binary and served at
//! `/ui/`. The app speaks only the public JSON-RPC API with the user's own key, so it needs no
//! endpoint of its own and can show nothing a client could not.
//!
//! The files have no version in their names, so browsers are told to check them on each use
//! (`no-cache`) and a check costs a 304 thanks to the ETag. The Content-Security-Policy allows
//! only these files: no inline script or style, no other origin, no framing.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use jsonrpsee::server::{HttpBody, HttpResponse};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// Where the dashboard lives. `/ui` alone is redirected here.
pub const ROOT: &str = "/ui/";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `ui/`; `index.html` answers `/ui/` itself.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("rpc.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("overview.js", JS),
    asset!("webhooks.js", JS),
    asset!("webhook-form.js", JS),
    asset!("deliveries.js", JS),
    asset!("events.js", JS),
];

/// Each asset's ETag: a digest of its bytes, made once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = hex::encode(&Sha256::digest(a.body)[..12]);
            HeaderValue::from_str(&format!("\"{digest}\"")).expect("hex is a header value")
        })
        .collect()
});

/// Whether `path` is the dashboard's (`/ui` or below `/ui/`): such a path is never a call.
pub fn owns(path: &str) -> bool {
    path == "/ui" || path.starts_with(ROOT)
}

/// The answer to a GET or HEAD of one of the dashboard's paths.
pub fn get(path: &str, request: &HeaderMap) -> HttpResponse {
    if path == "/ui" {
        return redirect(ROOT);
    }
    let name = match &path[ROOT.len()..] {
        "" => "index.html",
        name => name,
    };
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return plain(StatusCode::NOT_FOUND, "no such file in the dashboard");
    };
    let etag = &ETAGS[index];
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|seen| seen == etag);
    let mut response = if fresh {
        empty(StatusCode::NOT_MODIFIED)
    } else {
        let asset = &ASSETS[index];
        let mut response = Response::new(HttpBody::new(http_body_util::Full::new(
            bytes::Bytes::from_static(asset.body),
        )));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    protect(headers);
    response
}

/// What every answer of the dashboard carries. The key travels in the page's fragment and
/// in call bodies only; no referrer, no sniffing, no framing keep it there.
fn protect(headers: &mut HeaderMap) {
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn empty(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(HttpBody::empty());
    *response.status_mut() = status;
    response
}

fn redirect(to: &'static str) -> HttpResponse {
    let mut response = empty(StatusCode::PERMANENT_REDIRECT);
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    let mut response = Response::new(HttpBody::from(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    protect(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_ui_folder_is_served_and_no_other() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/ui");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
        served.sort();
        assert_eq!(served, on_disk, "ui/ and ASSETS must list the same files");
    }
}
