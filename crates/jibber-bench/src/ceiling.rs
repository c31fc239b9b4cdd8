//! The ceiling: a bare socketioxide relay (no auth, no validation, no storage) on its own
//! single-threaded runtime in this process. The handshake `auth.user` names the user; a
//! `sendMessage` is acknowledged with a sequence number and forwarded to the receiver's room as
//! `receivedMessage`, as the real server does after its commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use uuid::Uuid;

#[derive(Deserialize)]
struct Auth {
    user: Uuid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Send {
    chat_id: Uuid,
    receiver: Uuid,
    cipher: Value,
    temp_message_id: String,
}

/// A running ceiling relay; stops when dropped.
pub struct Ceiling {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the relay on 127.0.0.1 (a free port) on its own thread and runtime. `cpus` (a
/// `taskset -c` list such as "0" or "0-1,3") pins that thread, as `--server-cpus` pins a spawned
/// server: without it the relay shares this process's CPUs, which under `taskset -c 1 jibber
/// bench` are the load generator's own core.
pub fn start(cpus: Option<&str>) -> anyhow::Result<Ceiling> {
    let cpus = cpus.map(parse_cpu_list).transpose()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (pinned_tx, pinned_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let thread = std::thread::Builder::new()
        .name("ceiling".to_owned())
        .spawn(move || {
            let pinned = cpus.as_deref().map_or(Ok(()), pin_current_thread);
            let failed = pinned.is_err();
            let _ = pinned_tx.send(pinned);
            if failed {
                return;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("ceiling runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("ceiling listener");
                let (layer, io) = SocketIo::new_layer();
                let seqs: Arc<Mutex<HashMap<Uuid, Arc<AtomicI64>>>> = Arc::default();
                io.ns(
                    "/",
                    move |socket: SocketRef, TryData(auth): TryData<Value>| {
                        let seqs = seqs.clone();
                        async move {
                            if let Some(a) = auth
                                .ok()
                                .and_then(|v| serde_json::from_value::<Auth>(v).ok())
                            {
                                socket.join(a.user.to_string());
                            }
                            socket.on(
                                "sendMessage",
                                move |socket: SocketRef, Data(m): Data<Send>, ack: AckSender| {
                                    let counter = seqs
                                        .lock()
                                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                                        .entry(m.chat_id)
                                        .or_default()
                                        .clone();
                                    async move {
                                        let seq = counter.fetch_add(1, Ordering::Relaxed) + 1;
                                        let id = Uuid::now_v7();
                                        let _ = ack.send(&json!({ "ok": true, "data": {
                                            "messageId": id, "tempMessageId": m.temp_message_id,
                                            "chatId": m.chat_id, "sequenceNumber": seq,
                                            "createdAt": "2026-01-01T00:00:00Z", "duplicate": false,
                                        }}));
                                        let _ = socket
                                            .within(m.receiver.to_string())
                                            .emit(
                                                "receivedMessage",
                                                &json!({ "id": id, "chatId": m.chat_id,
                                            "sequenceNumber": seq, "cipher": m.cipher }),
                                            )
                                            .await;
                                    }
                                },
                            );
                        }
                    },
                );
                let app = axum::Router::new().layer(layer);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        })?;
    let ceiling = Ceiling {
        base,
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    pinned_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the ceiling thread ended before it started"))??;
    Ok(ceiling)
}

/// The CPUs of a `taskset -c` list: "0", "0,2", "0-3,6".
pub fn parse_cpu_list(list: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>()?, b.trim().parse::<usize>()?),
            None => {
                let c = part.parse::<usize>()?;
                (c, c)
            }
        };
        anyhow::ensure!(first <= last, "bad CPU range {part:?} in {list:?}");
        cpus.extend(first..=last);
    }
    anyhow::ensure!(!cpus.is_empty(), "no CPU in {list:?}");
    Ok(cpus)
}

/// Restricts the calling thread to `cpus`.
fn pin_current_thread(cpus: &[usize]) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn cpu_lists_parse_as_taskset_reads_them() {
        assert_eq!(parse_cpu_list("0").ok(), Some(vec![0]));
        assert_eq!(parse_cpu_list("0,2").ok(), Some(vec![0, 2]));
        assert_eq!(parse_cpu_list("0-2, 5").ok(), Some(vec![0, 1, 2, 5]));
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }
}
