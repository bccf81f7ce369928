//! Secrets at rest: webhook secrets and Basic-auth passwords are stored sealed under the
//! deployment's key (a key file beside a SQLite database, or `--encryption-key`), never in
//! plain text, and a wrong key is refused at start; what the receiver gets still verifies with
//! an independent Standard Webhooks library.

mod common;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// A secret of the accepted form that appears nowhere else.
fn secret(tag: &str) -> String {
    let bytes = format!("{tag:-<32}");
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes.as_bytes()[..32])
    )
}

/// Another valid key, not the one a database was sealed with.
const OTHER_KEY: &str = "b3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXItMDE=";

/// Every file of the SQLite database (the WAL and shared-memory files included) that holds any
/// of `needles`, with the needle found.
fn files_holding(db: &Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", db.display());
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{file} holds {needle}"));
            }
        }
    }
    found
}

/// The next request the receiver gets for event `event`.
async fn request_for(receiver: &Receiver, event: &Value) -> Received {
    eventually(
        "the event at the receiver",
        Duration::from_secs(30),
        || async {
            receiver
                .received()
                .into_iter()
                .find(|r| r.items().iter().any(|i| i["id"] == *event))
        },
    )
    .await
}

async fn publish(server: &Server) -> Value {
    server
        .ok(
            "addEvent",
            json!([server.key, {"object": "contact", "event": "subscribed"}]),
        )
        .await
}

/// Verifies the request with `secret` alone, as a receiver holding only that secret would.
fn verifies_with(got: &Received, secret: &str) -> bool {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&got.body, &got.headers)
        .is_ok()
}

fn basic_auth(got: &Received) -> String {
    let header = got.headers["authorization"].to_str().unwrap();
    let encoded = header.strip_prefix("Basic ").expect("Basic auth");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    String::from_utf8(decoded).unwrap()
}

/// Webhooks with a secret or password in plain text.
const PLAIN_ROWS: &str = "SELECT count(*) FROM webhooks WHERE substr(secret, 1, 7) <> 'enc:v1:'
    OR substr(previous_secret, 1, 7) <> 'enc:v1:' OR substr(auth_password, 1, 7) <> 'enc:v1:'";

/// Stored sealed on both backends; on SQLite, the bytes appear in no file of the database.
#[tokio::test]
async fn secrets_and_passwords_appear_nowhere_in_the_database_files() {
    let mut server = Server::start(&["--allow-private-targets"]);
    let given = secret("given-secret");
    let hook = server
        .ok(
            "addWebhook",
            json!([server.key, {"object": "contact", "event": "subscribed",
                   "url": "http://127.0.0.1:9/x", "secret": given,
                   "auth": {"username": "shop", "password": "first-password-4711"}}]),
        )
        .await;
    let rotated = server
        .ok("rotateWebhookSecret", json!([server.key, hook]))
        .await;
    let rotated = rotated.as_str().unwrap().to_owned();
    let edited = secret("edited-secret");
    server
        .ok(
            "editWebhook",
            json!([server.key, hook, {"secret": edited,
                   "auth": {"username": "shop", "password": "second-password-0815"}}]),
        )
        .await;
    let needles = [
        given.as_str(),
        rotated.as_str(),
        edited.as_str(),
        "first-password-4711",
        "second-password-0815",
    ];
    assert_eq!(server.sql_number(PLAIN_ROWS), 0);
    let sqlite = postgres_admin_url().is_none();
    if sqlite {
        // While it runs (the WAL holds the latest writes), and after it stopped.
        assert_eq!(
            files_holding(&server.db_file(), &needles),
            Vec::<String>::new()
        );
        let key_file = server.dir.path().join("hookrpc.key");
        let meta = std::fs::metadata(&key_file).expect("a key file beside the database");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
    }
    server.restart();
    let shown = server.ok("getWebhookById", json!([server.key, hook])).await;
    assert_eq!(shown["secret"], json!(edited), "opened for a full key");
    server.stop();
    if sqlite {
        assert_eq!(
            files_holding(&server.db_file(), &needles),
            Vec::<String>::new()
        );
    }
}

/// Rows written before secrets were sealed (plain text, as an older version left them) are
/// sealed by the next start, and on SQLite no copy of their plain text is left in the files;
/// they still sign and authenticate as before.
#[tokio::test]
async fn plain_text_rows_of_an_older_version_are_sealed_at_start() {
    let receiver = Receiver::start().await;
    let mut server = Server::start(FAST);
    let hook = server
        .ok(
            "addWebhook",
            json!([server.key, {"object": "contact", "event": "subscribed",
                   "url": receiver.url("/legacy"),
                   "auth": {"username": "shop", "password": "placeholder"}}]),
        )
        .await;
    assert_eq!(server.sql_number(PLAIN_ROWS), 0);
    server.stop();
    let (current, previous) = (secret("legacy-current"), secret("legacy-previous"));
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    server.sql_execute(&format!(
        "UPDATE webhooks SET secret = '{current}', previous_secret = '{previous}',
           previous_secret_until = {until}, auth_password = 'legacy-password-99'"
    ));
    assert_eq!(server.sql_number(PLAIN_ROWS), 1);
    let needles = [current.as_str(), previous.as_str(), "legacy-password-99"];
    let sqlite = postgres_admin_url().is_none();
    if sqlite {
        assert!(!files_holding(&server.db_file(), &needles).is_empty());
    }

    server.restart();
    assert_eq!(server.sql_number(PLAIN_ROWS), 0, "sealed at start");
    let event = publish(&server).await;
    let got = request_for(&receiver, &event).await;
    assert!(
        verifies_with(&got, &current),
        "signed with the current secret"
    );
    assert!(verifies_with(&got, &previous), "and with the previous one");
    assert_eq!(basic_auth(&got), "shop:legacy-password-99");
    let shown = server.ok("getWebhookById", json!([server.key, hook])).await;
    assert_eq!(shown["secret"], json!(current));
    if sqlite {
        assert_eq!(
            files_holding(&server.db_file(), &needles),
            Vec::<String>::new()
        );
        server.stop();
        assert_eq!(
            files_holding(&server.db_file(), &needles),
            Vec::<String>::new()
        );
    }
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_refused_at_start_with_a_clear_message() {
    let mut server = Server::start(&[]);
    server.stop();
    let db = server.db().to_owned();
    let refused = |args: &[&str]| {
        let (code, stderr) = serve_to_exit_with(&db, args);
        assert_eq!(code, Some(2), "{stderr}");
        stderr
    };
    let wrong = refused(&["--encryption-key", OTHER_KEY]);
    assert!(wrong.contains("not the key"), "{wrong}");
    let malformed = refused(&["--encryption-key", "c2hvcnQ="]);
    assert!(malformed.contains("32 bytes"), "{malformed}");
    assert!(!malformed.contains("c2hvcnQ="), "the key is never echoed");
    if postgres_admin_url().is_some() {
        // A PostgreSQL deployment must give its key.
        let (code, stderr, _) = run_to_exit(&["serve", "--listen", "127.0.0.1:0", "--db", &db]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("must give its encryption key"), "{stderr}");
        return;
    }
    // On SQLite: a key file with another key, and no key file at all.
    let key_file = server.dir.path().join("hookrpc.key");
    let kept = std::fs::read_to_string(&key_file).unwrap();
    std::fs::write(&key_file, format!("{OTHER_KEY}\n")).unwrap();
    let wrong = refused(&[]);
    assert!(
        wrong.contains("not the key") && wrong.contains("hookrpc.key"),
        "{wrong}"
    );
    std::fs::remove_file(&key_file).unwrap();
    let missing = refused(&[]);
    assert!(missing.contains("missing"), "{missing}");
    assert!(
        !key_file.exists(),
        "a lost key file is not replaced by a new key"
    );
    // With its own key back, it starts.
    std::fs::write(&key_file, kept).unwrap();
    server.restart();
    server.ok("countWebhooks", json!([server.key])).await;
}

/// The same key as a flag opens what the key file sealed (the flag wins over the file).
#[tokio::test]
async fn the_key_file_s_key_given_as_a_flag_opens_the_same_database() {
    if on_postgres("the_key_file_s_key_given_as_a_flag_opens_the_same_database") {
        return;
    }
    let mut server = Server::start(&[]);
    let hook = server
        .ok(
            "addWebhook",
            json!([server.key, webhook("https://hooks.invalid/x")]),
        )
        .await;
    let secret = server.ok("getWebhookById", json!([server.key, hook])).await["secret"].clone();
    server.stop();
    let key_file = server.dir.path().join("hookrpc.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    server.restart_with(&["--encryption-key", key.trim()]);
    let shown = server.ok("getWebhookById", json!([server.key, hook])).await;
    assert_eq!(shown["secret"], secret);
    assert!(!key_file.exists(), "no key file when a key is given");
}

/// Signatures verify with the `standardwebhooks` crate: with the given secret, then with both
/// secrets after a rotation; an edit that leaves the secret alone is no rotation.
#[tokio::test]
async fn signing_and_the_dual_signature_after_rotation_verify_with_standard_webhooks() {
    let receiver = Receiver::start().await;
    let server = Server::start(FAST);
    let first = secret("signing-first");
    let hook = server
        .ok(
            "addWebhook",
            json!([server.key, {"object": "contact", "event": "subscribed",
                   "url": receiver.url("/signed"), "secret": first,
                   "auth": {"username": "user", "password": "pass:word"}}]),
        )
        .await;
    let got = request_for(&receiver, &publish(&server).await).await;
    assert!(verifies_with(&got, &first));
    assert_eq!(basic_auth(&got), "user:pass:word");

    let second = server
        .ok("rotateWebhookSecret", json!([server.key, hook]))
        .await;
    let second = second.as_str().unwrap().to_owned();
    server
        .ok(
            "editWebhook",
            json!([server.key, hook, {"description": "unchanged secret"}]),
        )
        .await;
    let got = request_for(&receiver, &publish(&server).await).await;
    let signatures = got.headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert!(verifies_with(&got, &second), "the new secret signs");
    assert!(
        verifies_with(&got, &first),
        "the old one still signs for 24 h"
    );
    assert!(!verifies_with(&got, &secret("not-a-secret-of-it")));
    assert_eq!(basic_auth(&got), "user:pass:word");
}
