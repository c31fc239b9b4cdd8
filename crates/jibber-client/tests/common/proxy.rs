//! A fault-injecting TCP proxy for tests: it sits between clients and a server, forwards both
//! directions chunk by chunk, and when a fault is armed it watches the traffic and cuts
//! connections at the moment the fault describes (then disarms until armed again).
//!
//! What it recognises, and how:
//! - a `sendMessage` from a client: long-polling POST bodies are plain text (the event name is
//!   in them); WebSocket frames from a client are masked, so a client→server chunk of at least
//!   [`BIG_SEND`] bytes counts as one (tests pad their messages over it, and nothing else a
//!   client sends is that large; the SDK sends one message at a time, so one chunk holds at
//!   most one);
//! - the acknowledgement of a `sendMessage` in server→client traffic (never masked):
//!   `43<id>[...]` (Engine.IO message, Socket.IO ack) with the `duplicate` flag only that answer
//!   has, and whether the server set it (`"duplicate":true`: a repeat of a stored message);
//! - the Engine.IO upgrade: a client's `GET /socket.io/?...transport=websocket&sid=...`, and on
//!   that connection the server's `101` answer and its `3probe`.
//!
//! Cuts are abrupt (zero linger: the peers see a reset, as when a network path dies).
//!
//! With several servers ([`Proxy::start_failover`]) each new connection goes to the first one
//! that accepts it, as a load balancer does when a node dies (the several-node test,
//! crates/jibber-cli/tests/cluster.rs, uses it that way).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Client→server chunks at least this long are taken for a (masked) `sendMessage` frame.
pub const BIG_SEND: usize = 2000;

/// Where to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A client→server chunk carrying a `sendMessage` is forwarded only in part (its first
    /// half), then every connection is cut: the server never gets the whole request.
    MidSend,
    /// The server stored a message and acknowledges it: the chunk with the acknowledgement is
    /// dropped and every connection cut, so the client never learns it was stored.
    MidAck,
    /// The server accepted the client's WebSocket upgrade (`transport=websocket&sid=`): its
    /// `101 Switching Protocols` is dropped and that connection cut, before the probe.
    UpgradeBeforeProbe,
    /// The upgrade request passes, the server's `3probe` answer is dropped and that connection
    /// cut.
    UpgradeAfterProbe,
    /// A client asks for a user's public profile (`GET /api/v1/users/<id>`, not `/users/me`): the
    /// request is dropped and that connection cut, as if the server went away just then.
    ProfileRead,
}

/// What passed through the proxy, as counted by it.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections cut by a fault (each connection counted once).
    pub connections_cut: AtomicUsize,
    /// Faults that fired (one firing may cut several connections).
    pub faults: AtomicUsize,
    /// `sendMessage` requests seen from clients (forwarded or not).
    pub sends: AtomicUsize,
    /// Acknowledgements of `sendMessage` forwarded to a client.
    pub acks: AtomicUsize,
    /// Of those, the ones the server flagged as a repeat of a stored message.
    pub duplicate_acks: AtomicUsize,
    /// WebSocket upgrade requests seen.
    pub upgrades: AtomicUsize,
    /// Connections that went to another server than the first (it refused them).
    pub failovers: AtomicUsize,
}

struct Shared {
    /// Servers in order of preference.
    upstreams: Vec<SocketAddr>,
    /// The armed fault and how many more times it fires.
    armed: Mutex<Option<(Fault, usize)>>,
    /// Each live connection's cut switch.
    live: Mutex<HashMap<u64, watch::Sender<bool>>>,
    next_id: AtomicU64,
    counters: Counters,
    /// Bumped at every firing (tests wait on it).
    fired: watch::Sender<usize>,
}

impl Shared {
    /// Takes one firing of the armed fault if `fault` is the one armed.
    fn take(&self, fault: Fault) -> bool {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        match *armed {
            Some((f, left)) if f == fault => {
                *armed = (left > 1).then_some((f, left - 1));
                true
            }
            _ => false,
        }
    }

    fn fire(&self, only: Option<u64>) {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for (id, cut) in live.iter() {
            if only.is_none_or(|o| o == *id) {
                let _ = cut.send(true);
            }
        }
        self.counters.faults.fetch_add(1, Ordering::SeqCst);
        self.fired.send_modify(|n| *n += 1);
    }
}

/// A running proxy; dropped, it stops accepting (live connections end with their peers).
pub struct Proxy {
    /// `http://127.0.0.1:<port>`: give this to the clients instead of the server's address.
    pub base: String,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Proxy {
    /// A proxy in front of `server_base` (`http://host:port`).
    pub async fn start(server_base: &str) -> Proxy {
        Self::start_failover(&[server_base]).await
    }

    /// A proxy in front of several servers: each connection goes to the first that accepts it.
    pub async fn start_failover(server_bases: &[&str]) -> Proxy {
        let upstreams: Vec<SocketAddr> = server_bases
            .iter()
            .map(|b| {
                b.trim_start_matches("http://")
                    .parse()
                    .expect("server address")
            })
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let base = format!("http://{}", listener.local_addr().expect("proxy address"));
        let shared = Arc::new(Shared {
            upstreams,
            armed: Mutex::new(None),
            live: Mutex::default(),
            next_id: AtomicU64::new(0),
            counters: Counters::default(),
            fired: watch::channel(0).0,
        });
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(connection(shared.clone(), client));
                }
            }
        });
        Proxy {
            base,
            shared,
            accept,
        }
    }

    /// Arms `fault`: it fires at the first traffic it matches, once.
    pub fn arm(&self, fault: Fault) {
        self.arm_times(fault, 1);
    }

    /// Arms `fault` to fire at the next `times` matches.
    pub fn arm_times(&self, fault: Fault, times: usize) {
        *self.shared.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some((fault, times));
    }

    /// Disarms whatever fault is armed.
    pub fn disarm(&self) {
        *self.shared.armed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// How many faults fired so far.
    pub fn fired(&self) -> usize {
        *self.shared.fired.borrow()
    }

    /// Waits until `n` faults have fired in all; panics after `timeout` with what was seen.
    pub async fn wait_fired(&self, n: usize, timeout: Duration) {
        let mut rx = self.shared.fired.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|fired| *fired >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "fault {n} did not fire within {timeout:?} (armed {:?}, {:?})",
                    self.shared.armed.lock().unwrap_or_else(|e| e.into_inner()),
                    self.shared.counters
                )
            })
            .expect("the proxy is alive");
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }
}

/// What to do with one chunk.
enum Verdict {
    Forward,
    /// Forward the first `n` bytes, then cut (every connection, or only this one).
    CutAfter {
        n: usize,
        all: bool,
    },
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    count(hay, needle) > 0
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// The `sendMessage` acknowledgements in a server→client chunk: (how many, how many duplicates).
/// An acknowledgement is a packet `43<id>[...]` whose data has the `duplicate` flag, which only
/// the answer to `sendMessage` carries.
fn send_acks(chunk: &[u8]) -> (usize, usize) {
    let (mut acks, mut duplicates) = (0, 0);
    let mut rest = chunk;
    while let Some(at) = rest.windows(2).position(|w| w == b"43") {
        rest = &rest[at + 2..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || rest.get(digits) != Some(&b'[') {
            continue;
        }
        let packet = &rest[digits..];
        let end = packet
            .windows(2)
            .position(|w| w == b"}]")
            .unwrap_or(packet.len());
        let packet = &packet[..end];
        if contains(packet, br#""duplicate":true"#) {
            acks += 1;
            duplicates += 1;
        } else if contains(packet, br#""duplicate":false"#) {
            acks += 1;
        }
    }
    (acks, duplicates)
}

/// Client→server: counts sends (and, when armed, cuts one) and notes an upgrade request.
fn client_chunk(shared: &Shared, chunk: &[u8], upgrade: &AtomicBool) -> Verdict {
    let sends = count(chunk, b"sendMessage").max(usize::from(chunk.len() >= BIG_SEND));
    if sends > 0 {
        shared.counters.sends.fetch_add(sends, Ordering::SeqCst);
        if shared.take(Fault::MidSend) {
            return Verdict::CutAfter {
                n: chunk.len() / 2,
                all: true,
            };
        }
    }
    if chunk.starts_with(b"GET /api/v1/users/")
        && !chunk.starts_with(b"GET /api/v1/users/me")
        && shared.take(Fault::ProfileRead)
    {
        return Verdict::CutAfter { n: 0, all: false };
    }
    if chunk.starts_with(b"GET /socket.io/") && contains(chunk, b"transport=websocket&sid=") {
        shared.counters.upgrades.fetch_add(1, Ordering::SeqCst);
        upgrade.store(true, Ordering::SeqCst);
    }
    Verdict::Forward
}

/// Server→client: counts acknowledgements and (when armed) drops one and cuts.
fn server_chunk(shared: &Shared, chunk: &[u8], upgrade: bool) -> Verdict {
    let (acks, duplicates) = send_acks(chunk);
    if acks > 0 && shared.take(Fault::MidAck) {
        return Verdict::CutAfter { n: 0, all: true };
    }
    shared.counters.acks.fetch_add(acks, Ordering::SeqCst);
    shared
        .counters
        .duplicate_acks
        .fetch_add(duplicates, Ordering::SeqCst);
    if upgrade && chunk.starts_with(b"HTTP/1.1 101") && shared.take(Fault::UpgradeBeforeProbe) {
        return Verdict::CutAfter { n: 0, all: false };
    }
    if upgrade && contains(chunk, b"3probe") && shared.take(Fault::UpgradeAfterProbe) {
        return Verdict::CutAfter { n: 0, all: false };
    }
    Verdict::Forward
}

async fn connection(shared: Arc<Shared>, client: TcpStream) {
    let mut server = None;
    for (i, upstream) in shared.upstreams.iter().enumerate() {
        if let Ok(s) = TcpStream::connect(upstream).await {
            if i > 0 {
                shared.counters.failovers.fetch_add(1, Ordering::SeqCst);
            }
            server = Some(s);
            break;
        }
    }
    let Some(server) = server else {
        return;
    };
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
        // Closing resets the connection (a cut looks like a dead path, not a polite close).
        let _ = stream.set_zero_linger();
    }
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let (cut_tx, mut cut_rx) = watch::channel(false);
    shared
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, cut_tx);
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    // Set by the client→server pump when this connection asked for an upgrade.
    let upgrade = AtomicBool::new(false);
    let up = pump(&shared, client_r, server_w, id, Side::Client, &upgrade);
    let down = pump(&shared, server_r, client_w, id, Side::Server, &upgrade);
    let cut = tokio::select! {
        (a, b) = async { tokio::join!(up, down) } => a || b,
        _ = cut_rx.wait_for(|cut| *cut) => true,
    };
    if cut {
        shared
            .counters
            .connections_cut
            .fetch_add(1, Ordering::SeqCst);
    }
    shared
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// Copies one direction until EOF (then half-closes) or until the chunk it sees fires a fault
/// (then returns true; the connection is dropped, which resets it).
async fn pump(
    shared: &Shared,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    id: u64,
    side: Side,
    upgrade: &AtomicBool,
) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return false;
            }
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let verdict = match side {
            Side::Client => client_chunk(shared, chunk, upgrade),
            Side::Server => server_chunk(shared, chunk, upgrade.load(Ordering::SeqCst)),
        };
        match verdict {
            Verdict::Forward => {
                if to.write_all(chunk).await.is_err() {
                    return false;
                }
            }
            Verdict::CutAfter { n, all } => {
                let _ = to.write_all(&chunk[..n]).await;
                let _ = to.flush().await;
                shared.fire(if all { None } else { Some(id) });
                return true;
            }
        }
    }
}
