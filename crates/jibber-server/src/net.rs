//! The accept loop: `axum::serve` plus the two limits it lacks, so that no client can hold a
//! connection (and its task and buffers) forever.
//!
//! - **Header read**: a client must send a whole request head within `header_read` (the request
//!   timeout), counted from when the connection opens or falls idle between requests. A
//!   connection that sends nothing, drips its headers (slowloris) or idles on keep-alive is
//!   closed.
//! - **Write stall**: a peer that accepts no byte for `write_stall` (the Socket.IO ping timeout)
//!   is cut: its writes and reads fail from then on. This is what ends a WebSocket whose client
//!   never reads: engineioxide's writer would otherwise wait on the full TCP buffer forever, and
//!   with it the session's close and the `disconnect` handler.
//!
//! HTTP/2 is left to the reverse proxy in front: detecting it would mean waiting on the client
//! before the header timeout runs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tower::ServiceExt;

/// The connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read: Duration,
    pub write_stall: Duration,
}

/// Accepts connections and serves `router` on each (HTTP/1.1 with upgrades for WebSockets)
/// until `signal`, then lets the open connections finish.
pub async fn serve_connections(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    signal: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    // Shutdown is told to every connection through `stop`; each holds `done` until it ends.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    let mut signal = std::pin::pin!(signal);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        // Small writes go out at once: without it, Nagle's algorithm held an event's second
        // packet (the send's acknowledgement after `messageSent`) until the client's delayed
        // ACK, about 40 ms (BENCHMARKS.md).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo::<SocketAddr>(peer));
                req.map(axum::body::Body::new)
            },
        );
        let io = StallGuard::new(stream, limits.write_stall);
        let conn = builder
            .serve_connection(
                TokioIo::new(io),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .with_upgrades();
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
            drop(done);
        });
    }
    drop(listener);
    drop(done_rx);
    let _ = stop_tx.send(true);
    done_tx.closed().await;
    Ok(())
}

/// A stream whose writes may stay blocked for at most `limit`; after that the connection is
/// dead: every read and write fails.
pub struct StallGuard<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    dead: bool,
}

impl<S> StallGuard<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
            dead: false,
        }
    }

    fn dead_error() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "the peer accepted no data in time")
    }

    /// Runs one write-side poll under the stall limit.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut S, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.dead {
            return Poll::Ready(Err(Self::dead_error()));
        }
        match poll(&mut self.inner, cx) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                ready!(timer.as_mut().poll(cx));
                self.dead = true;
                metrics::counter!("jibber_connections_cut_total", "reason" => "write_stall")
                    .increment(1);
                Poll::Ready(Err(Self::dead_error()))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(Self::dead_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard(cx, |s, cx| Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |s, cx| Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .guard(cx, |s, cx| Pin::new(s).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_stalled_write_kills_the_stream_and_a_moving_one_does_not() {
        // A 64-byte pipe that nobody reads.
        let (near, mut far) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(near, Duration::from_millis(300));
        guarded.write_all(&[1u8; 64]).await.expect("fits");
        let err = guarded.write_all(&[2u8; 64]).await.expect_err("stalls");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let mut buf = [0u8; 8];
        assert!(guarded.read(&mut buf).await.is_err(), "reads fail too");
        // A reader that keeps up: the limit never fires, however long the transfer takes.
        let (near, mut far2) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(near, Duration::from_millis(300));
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0u8; 64];
            while total < 64 * 20 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                total += far2.read(&mut buf).await.expect("read");
            }
            total
        });
        guarded.write_all(&[3u8; 64 * 20]).await.expect("moving");
        assert_eq!(reader.await.expect("join"), 1280);
        drop(far.read(&mut buf).await);
    }
}
