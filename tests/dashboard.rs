//! The dashboard's files as the server hands them out at /ui/: built in, with the right types,
//! revalidated through ETags, under a Content-Security-Policy that allows no inline script, and
//! never taken for a call. The app itself is driven in a real browser by tests/browser/
//! (`.ci/browser.sh`).

mod common;
use common::*;
use serde_json::json;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_app_is_served_at_ui_with_its_types_and_a_strict_policy() {
    let server = Server::start(&[]);
    let base = format!("http://{}", server.addr);
    let client = client();

    let redirect = client.get(format!("{base}/ui")).send().await.unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(header(&redirect, "location"), "/ui/");

    let files = [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/chart.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ];
    for (path, content_type) in files {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert_eq!(header(&response, "cache-control"), "no-cache", "{path}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
        let policy = header(&response, "content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
    }
    let page = client.get(format!("{base}/ui/")).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains(r#"<script type="module" src="app.js"></script>"#));

    let missing = client
        .get(format!("{base}/ui/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let head = client.head(format!("{base}/ui/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.bytes().await.unwrap().len(), 0);
}

#[tokio::test]
async fn an_unchanged_file_is_answered_304_by_its_etag() {
    let server = Server::start(&[]);
    let url = format!("http://{}/ui/app.js", server.addr);
    let client = client();
    let first = client.get(&url).send().await.unwrap();
    let etag = header(&first, "etag");
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let again = client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag"), etag);
    let other = client
        .get(&url)
        .header("if-none-match", "\"something else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn a_post_to_the_dashboard_is_not_a_call() {
    let server = Server::start(&[]);
    let event = json!({"jsonrpc": "2.0", "id": 1, "method": "addEvent",
                       "params": [server.key, {"object": "contact", "event": "created"}]});
    for path in ["/ui", "/ui/", "/ui/app.js"] {
        let response = client()
            .post(format!("http://{}{path}", server.addr))
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{path}");
        assert_eq!(header(&response, "allow"), "GET, HEAD", "{path}");
    }
    assert_eq!(server.ok("countEvents", json!([server.key])).await, 0);
    // Every other path still takes calls.
    let (status, _) = server.post_raw("/uix", event.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(server.ok("countEvents", json!([server.key])).await, 1);
}

/// What the policy forbids must not be in the sources either: no inline script, style or
/// handler in the page, no HTML built from strings in the scripts (everything the API returns
/// is shown as text), and no module from elsewhere.
#[test]
fn the_sources_need_nothing_the_policy_forbids() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/ui");
    let page = std::fs::read_to_string(format!("{dir}/index.html")).unwrap();
    for script in page.split("<script").skip(1) {
        let tag = &script[..script.find('>').unwrap()];
        assert!(tag.contains("src="), "an inline script: <script{tag}>");
    }
    for forbidden in ["<style", " style=", " onclick=", " onload=", "javascript:"] {
        assert!(!page.contains(forbidden), "index.html has {forbidden}");
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "js") {
            let source = std::fs::read_to_string(&path).unwrap();
            let forbidden = [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "new Function",
            ];
            for word in forbidden {
                assert!(!source.contains(word), "{}: {word}", path.display());
            }
            // Modules come from the dashboard itself, never from another origin.
            for import in source.split(" from \"").skip(1) {
                assert!(
                    import.starts_with("./"),
                    "{}: imports {import:.40}",
                    path.display()
                );
            }
        }
    }
}
