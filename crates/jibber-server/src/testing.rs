//! A real server on 127.0.0.1 port 0 with a fresh data directory, for the tests of this crate and
//! of the clients (feature `testing`).

use tokio::sync::oneshot;

use crate::{App, AppState, Settings, Sources};

/// A stopped server's data directory and address.
pub struct Parked {
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl Parked {
    /// Starts the server again on the same port and data directory, with `extra` settings.
    pub async fn resume(self, extra: &[(&str, &str)]) -> TestServer {
        let listener = tokio::net::TcpListener::bind(&self.addr)
            .await
            .expect("bind the same port again");
        TestServer::start_on(self.dir, listener, extra).await
    }
}

/// A running server; [`TestServer::stop`] shuts it down and waits for it.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub state: AppState,
    /// The data directory (database and secrets); removed on drop.
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server with test defaults (auth rate limits out of the way) and the `extra`
    /// settings (key, value) on top.
    pub async fn start(extra: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::start_on(dir, listener, extra).await
    }

    /// Stops the server but keeps its data directory and address for [`Parked::resume`].
    pub async fn park(mut self) -> Parked {
        let addr = self.base.trim_start_matches("http://").to_owned();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        self.stop().await;
        Parked { dir, addr }
    }

    async fn start_on(
        dir: tempfile::TempDir,
        listener: tokio::net::TcpListener,
        extra: &[(&str, &str)],
    ) -> TestServer {
        let mut flags = vec![
            ("data_dir".to_owned(), dir.path().display().to_string()),
            ("host".to_owned(), "127.0.0.1".to_owned()),
            ("port".to_owned(), "0".to_owned()),
            ("auth_rate_per_ip".to_owned(), "100000".to_owned()),
            ("auth_rate_per_username".to_owned(), "100000".to_owned()),
        ];
        for (k, v) in extra {
            flags.retain(|(key, _)| key != k);
            flags.push(((*k).to_owned(), (*v).to_owned()));
        }
        let settings = Settings::load(&Sources {
            flags,
            ..Sources::default()
        })
        .expect("settings");
        let addr = listener.local_addr().expect("addr");
        let app = App::build(settings).await.expect("build");
        let state = app.state.clone();
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            state,
            dir,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Stops the server and waits (at most 15 s) for it to finish cleanly.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(std::time::Duration::from_secs(15), server)
                .await
                .expect("server stops in time")
                .expect("join")
                .expect("server result");
        }
    }
}
