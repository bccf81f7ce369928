//! A TCP proxy between a node and PostgreSQL that can lose the answer to a commit: the commit
//! goes through, and the connection is cut before the node hears so, as when PostgreSQL
//! restarts or the network fails at that moment. The node cannot tell that from a commit that
//! never happened, which the proxy can bring about too, by cutting the connection instead of
//! passing the `COMMIT` on.
//!
//! It reads PostgreSQL's wire protocol just enough for that: statements are recognized by their
//! text in `Parse` messages (and by name when a prepared one is bound again), a transaction by
//! the `COMMIT` that tokio-postgres sends as a simple query, and its answer by the server's
//! `CommandComplete`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Where a marked transaction's connection is cut.
#[derive(Clone, Copy)]
pub enum Cut {
    /// Its `COMMIT` never reaches the server, which rolls the transaction back.
    BeforeCommit,
    /// The server commits, and its answer never reaches the node.
    AfterCommit,
}

pub struct CommitCutter {
    /// Where nodes connect instead of PostgreSQL.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: SocketAddr,
    /// Text that marks a transaction whose commit may be cut.
    marker: String,
    armed: Mutex<Option<Cut>>,
    cuts: AtomicUsize,
}

impl CommitCutter {
    /// A proxy to the PostgreSQL server at `upstream` that, once armed, cuts the connection of
    /// the next transaction that ran a statement containing `marker` when it commits. It runs on a thread of its own, so that a test blocked in starting a
    /// node (which connects through it) does not block it.
    pub fn start(upstream: SocketAddr, marker: &str) -> CommitCutter {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            marker: marker.to_owned(),
            armed: Mutex::new(None),
            cuts: AtomicUsize::new(0),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                while let Ok((node, _)) = listener.accept().await {
                    tokio::spawn(relay(node, accepting.clone()));
                }
            });
        });
        CommitCutter { addr, shared }
    }

    /// Cuts the next marked transaction's connection at its commit, `when`.
    pub fn arm(&self, when: Cut) {
        *self.shared.armed.lock().unwrap() = Some(when);
    }

    /// How many connections were cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }
}

/// One connection, relayed both ways until either side closes or it is cut.
async fn relay(node: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let (node_in, node_out) = node.into_split();
    let (server_in, server_out) = server.into_split();
    let cut_next_commit = AtomicBool::new(false);
    // Whichever ends first drops every half: both sockets close.
    tokio::select! {
        _ = from_node(node_in, server_out, &shared, &cut_next_commit) => {}
        _ = from_server(server_in, node_out, &shared, &cut_next_commit) => {}
    }
}

/// One message: its type (0 for the start-up message, which has none) and its body.
async fn message(from: &mut BufReader<OwnedReadHalf>, typed: bool) -> Option<(u8, Vec<u8>)> {
    let kind = if typed { from.read_u8().await.ok()? } else { 0 };
    let len = from.read_u32().await.ok()? as usize;
    let mut body = vec![0; len.checked_sub(4)?];
    from.read_exact(&mut body).await.ok()?;
    Some((kind, body))
}

async fn forward(to: &mut OwnedWriteHalf, kind: u8, body: &[u8]) -> Option<()> {
    let mut bytes = Vec::with_capacity(body.len() + 5);
    if kind != 0 {
        bytes.push(kind);
    }
    bytes.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    bytes.extend_from_slice(body);
    to.write_all(&bytes).await.ok()
}

/// The null-terminated strings at the start of `body`.
fn strings(body: &[u8]) -> impl Iterator<Item = String> + '_ {
    body.split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

/// The node's side: notes which statements carry the marker and which transaction ran one;
/// when that transaction commits while armed, cuts the connection there or notes that the
/// answer is to be cut.
async fn from_node(
    from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    cut_next_commit: &AtomicBool,
) {
    let mut from = BufReader::new(from);
    let mut marked_statements: HashMap<String, bool> = HashMap::new();
    let mut marked_transaction = false;
    let mut typed = false; // the start-up message comes first, without a type
    while let Some((kind, body)) = message(&mut from, typed).await {
        typed = true;
        let mut text = strings(&body);
        match kind {
            b'P' => {
                let (name, query) = (text.next().unwrap(), text.next().unwrap_or_default());
                marked_statements.insert(name, query.contains(&shared.marker));
            }
            b'B' => {
                let (_portal, statement) = (text.next(), text.next().unwrap_or_default());
                marked_transaction |= marked_statements.get(&statement) == Some(&true);
            }
            b'Q' => {
                let query = text.next().unwrap_or_default();
                if query.trim().eq_ignore_ascii_case("COMMIT") && marked_transaction {
                    match shared.armed.lock().unwrap().take() {
                        Some(Cut::BeforeCommit) => {
                            shared.cuts.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Some(Cut::AfterCommit) => cut_next_commit.store(true, Ordering::SeqCst),
                        None => {}
                    }
                }
                marked_transaction &= !["BEGIN", "COMMIT", "ROLLBACK"]
                    .iter()
                    .any(|word| query.trim().eq_ignore_ascii_case(word));
            }
            _ => {}
        }
        if forward(&mut to, kind, &body).await.is_none() {
            return;
        }
    }
}

/// The server's side: everything is passed on but the answer to a commit that is to be cut.
async fn from_server(
    from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    cut_next_commit: &AtomicBool,
) {
    let mut from = BufReader::new(from);
    while let Some((kind, body)) = message(&mut from, true).await {
        let commit_done = kind == b'C' && body.starts_with(b"COMMIT\0");
        if commit_done && cut_next_commit.load(Ordering::SeqCst) {
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if forward(&mut to, kind, &body).await.is_none() {
            return;
        }
    }
}
