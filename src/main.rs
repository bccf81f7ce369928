//! The `hookrpc` command: `serve`, and `key add|list|revoke`.

use clap::{Parser, Subcommand, ValueEnum};
use hookrpc::api::{App, Gate, KEY_CACHE_TTL};
use hookrpc::catalog::{self, Catalog};
use hookrpc::config::{Config, KeyArg, LogFormat};
use hookrpc::delivery;
use hookrpc::error::ApiError;
use hookrpc::model::Access;
use hookrpc::store::{self, KeyError, Purpose, Store};
use hookrpc::{maintenance, metrics, server};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc rather than the system's allocator: every call and every delivery allocates and
/// frees many small buffers across threads, and glibc's malloc took a sixth of the server's
/// CPU doing it (BENCHMARKS.md, "The allocator"). Built as its version 2, which does not ask
/// the kernel for transparent huge pages (Cargo.toml's features `v2`, `no_thp`): version 3
/// keeps freed memory for a second before it gives it back, and asked for huge pages, so its
/// arenas were resident 2 MiB at a time (18 MiB of an idle server's 33). A kernel that gives
/// huge pages unasked (THP `always`) still would: `MIMALLOC_ALLOW_THP=0` turns them off for
/// the process (README, "Running for months").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hookrpc",
    version,
    about = "Self-hosted webhooks behind a Vision6-style JSON-RPC API"
)]
struct Cli {
    /// SQLite database file (created if missing), or a PostgreSQL database as
    /// postgres://user:password@host:port/dbname for a cluster of nodes.
    #[arg(long, env = "HOOKRPC_DB", default_value = "hookrpc.db", global = true)]
    db: String,
    /// The event catalog, a TOML file of objects and their events (Vision6's when not given).
    #[arg(long, env = "HOOKRPC_CATALOG", global = true)]
    catalog: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server and the delivery engine.
    Serve(Box<Config>),
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Print the active event catalog (as a file for --catalog).
    Catalog,
    /// Copy a SQLite deployment (keys, webhooks with their secrets, events, deliveries,
    /// attempts, ids kept) into an empty PostgreSQL database, to run it as a cluster.
    Migrate {
        /// The SQLite database file to copy (stop the server that uses it first).
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database to copy into (postgres://…); it must hold no data.
        #[arg(long)]
        to: String,
        /// Secrets are copied sealed, as they are: the key (given, or the key file beside the
        /// SQLite database) is checked against the database, and every PostgreSQL node must
        /// then be started with it.
        #[command(flatten)]
        key: KeyArg,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Create a key and print it (once: only its hash is stored).
    Add {
        /// The account the key opens, by name (created with its first key).
        #[arg(long)]
        account: String,
        /// What the key may do: full (every method) or standard (reads, publishing, testWebhook).
        #[arg(long, value_enum, default_value = "full")]
        access: AccessArg,
    },
    /// List keys by prefix, account and access level.
    List,
    /// Revoke the key whose first characters are PREFIX.
    Revoke { prefix: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum AccessArg {
    Full,
    Standard,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve(config) => config.log_format,
        Command::Key { .. } | Command::Catalog | Command::Migrate { .. } => LogFormat::Text,
    };
    init_tracing(log_format);
    if let Err(why) = load_catalog(cli.catalog.as_deref()) {
        eprintln!("hookrpc: {why}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Serve(config) => match serve(cli.db, Arc::new(*config)).await {
            Err(Stop::Refused(why)) => {
                eprintln!("hookrpc: {why}");
                return ExitCode::from(2);
            }
            Err(Stop::Failed(e)) => Err(e),
            Ok(()) => Ok(()),
        },
        Command::Key { action } => key(cli.db, action).await,
        Command::Catalog => {
            print!("{}", catalog::active().to_toml());
            Ok(())
        }
        Command::Migrate { from, to, key } => migrate(&from, &to, key).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookrpc: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

async fn migrate(from: &Path, to: &str, key: KeyArg) -> Result<(), ApiError> {
    let migrated = store::copy::sqlite_to_postgres(from, to, key.encryption_key.as_ref()).await?;
    println!("copied {} into {}:", from.display(), store::redacted(to));
    for table in migrated.tables {
        println!("  {:<20} {} rows", table.table, table.to);
    }
    if let Some(origin) = migrated.key_origin {
        let key = match origin.as_str() {
            store::GIVEN_KEY => "the value given here".to_owned(),
            file => format!("the contents of the {file}"),
        };
        println!(
            "secrets were copied sealed: start every PostgreSQL node with --encryption-key \
             (or HOOKRPC_ENCRYPTION_KEY) set to {key}"
        );
    }
    Ok(())
}

fn describe(e: &ApiError) -> String {
    match e {
        ApiError::Internal(cause) => cause.clone(),
        ApiError::InvalidParams(problems) => problems
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // jsonrpsee logs whole request bodies, API keys included, at TRACE, and tokio-postgres
    // logs every statement's parameters (secrets among them) at DEBUG: whatever RUST_LOG says,
    // their events stop below that (a cap, so RUST_LOG=warn keeps them quiet too).
    let cap = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("jsonrpsee", LevelFilter::DEBUG)
        .with_target("tokio_postgres", LevelFilter::INFO);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // A log line that cannot be written (disk full) is lost; the default would report it
        // with eprintln!, which panics when stderr fails too.
        .log_internal_errors(false)
        // Colour codes only for a person at a terminal, never into files or collectors.
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry().with(cap).with(filter);
    match format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry
            .with(
                fmt.json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .init(),
    }
}

/// Makes the `--catalog` file (if any) the active catalog; a bad file is a clear error.
fn load_catalog(path: Option<&Path>) -> Result<(), String> {
    let Some(path) = path else {
        return Ok(());
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("catalog {}: {e}", path.display()))?;
    let catalog =
        Catalog::from_toml(&text).map_err(|e| format!("catalog {}: {e}", path.display()))?;
    catalog::install(catalog)
}

/// Live webhooks that follow an object or event the catalog no longer has are refused at
/// start, named, unless `--catalog-prune` says to delete them.
async fn check_catalog(store: &Store, prune: bool) -> Result<(), Stop> {
    let catalog = catalog::active();
    let orphans: Vec<(i64, Vec<String>)> = store
        .live_webhook_events()
        .await?
        .into_iter()
        .map(|(id, object, events)| (id, catalog.lacks(&object, &events)))
        .filter(|(_, lacking)| !lacking.is_empty())
        .collect();
    if orphans.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = orphans
        .iter()
        .map(|(id, lacking)| format!("webhook {id} ({})", lacking.join(", ")))
        .collect();
    if !prune {
        return Err(Stop::Refused(format!(
            "the catalog no longer has what these live webhooks follow: {}; restore it, or \
             start with --catalog-prune to delete them",
            named.join(", ")
        )));
    }
    tracing::warn!(webhooks = %named.join(", "), "--catalog-prune: deleting webhooks that follow what the catalog no longer has");
    Ok(store
        .retire_webhooks(orphans.iter().map(|(id, _)| *id).collect())
        .await?)
}

/// Why `serve` stopped before its time: settings it refuses (exit code 2), or a failure.
enum Stop {
    Refused(String),
    Failed(ApiError),
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Stop::Failed(e)
    }
}

impl From<KeyError> for Stop {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Refused(why) => Stop::Refused(why),
            KeyError::Store(e) => Stop::Failed(e),
        }
    }
}

async fn serve(db: String, config: Arc<Config>) -> Result<(), Stop> {
    config.check().map_err(Stop::Refused)?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    survive_file_size_limit();
    metrics::install();
    let readers = config.readers;
    let store = Store::open(&db, Purpose::Serve { readers })
        .await?
        .unlock(&db, config.key.encryption_key.as_ref())
        .await?;
    check_catalog(&store, config.catalog_prune).await?;
    if let Some(key) = store.bootstrap().await? {
        println!("created account default with full-access key: {key}");
    }
    let engine = delivery::start(store.clone(), config.clone())
        .map_err(|e| ApiError::Internal(format!("http client: {e}")))?;
    let retention = maintenance::start(store.clone(), config.retention);
    let app = Arc::new(App {
        store,
        gate: Gate::new(config.max_concurrent_calls),
        config: config.clone(),
    });
    let (handle, addr) = server::start(app).await?;
    println!("listening on {addr}");
    tracing::info!(%addr, db = %store::redacted(&db), "hookrpc started");
    shutdown_signal().await;
    tracing::info!("shutting down: no new calls, finishing deliveries in flight");
    let _ = handle.stop();
    handle.stopped().await;
    if let Some(retention) = retention {
        retention.abort(); // a batch cut short is rolled back or already committed
    }
    engine.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// A file-size limit (RLIMIT_FSIZE) must fail a write, not kill the server: once a handler is
/// installed, writes past the limit return an error (a call answers 100) instead of SIGXFSZ
/// terminating the process, and the server carries on when the limit is raised.
fn survive_file_size_limit() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::from_raw(libc::SIGXFSZ)) {
            Ok(mut limit) => {
                tokio::spawn(async move {
                    while limit.recv().await.is_some() {
                        tracing::error!("file size limit reached: writes fail until it is raised");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot handle SIGXFSZ"),
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Keys touch no secret: the store is not unlocked, so these commands need no encryption key.
async fn key(db: String, action: KeyAction) -> Result<(), ApiError> {
    let store = Store::open(&db, Purpose::Command).await?;
    match action {
        KeyAction::Add { account, access } => {
            let access = match access {
                AccessArg::Full => Access::Full,
                AccessArg::Standard => Access::Standard,
            };
            let key = store.add_key(&account, access).await?;
            eprintln!(
                "new {} key for account {account} (shown once):",
                access.as_str()
            );
            println!("{key}");
        }
        KeyAction::List => {
            println!(
                "{:<10} {:<20} {:<9} {:<11} revoked",
                "prefix", "account", "access", "created"
            );
            for k in store.list_keys().await? {
                let revoked = k.revoked_time.map_or("-".to_owned(), |t| t.to_string());
                println!(
                    "{:<10} {:<20} {:<9} {:<11} {revoked}",
                    k.prefix,
                    k.account,
                    k.access.as_str(),
                    k.creation_time
                );
            }
        }
        KeyAction::Revoke { prefix } => {
            store.revoke_key(&prefix).await?;
            // A running server trusts what it looked up for this long: wait it out, so that
            // the key is refused everywhere once this command has returned.
            tokio::time::sleep(KEY_CACHE_TTL).await;
            eprintln!("revoked");
        }
    }
    Ok(())
}
