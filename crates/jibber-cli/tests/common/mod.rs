//! The real `jibber` binary, for the CLI's tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

pub fn jibber() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jibber"))
}

/// Forwards each line of `stream` to a channel, so a test waits for a line with a timeout.
pub fn lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line that `pick` accepts; every line read is kept in `seen`.
pub fn wait_line<T>(
    rx: &Receiver<String>,
    seen: &mut Vec<String>,
    timeout: Duration,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no expected line within {timeout:?} ({e}); saw {seen:#?}"));
        let found = pick(&line);
        seen.push(line);
        if let Some(t) = found {
            return t;
        }
    }
}

/// `jibber serve --port 0` in `dir`; killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// The lines printed so far (addresses) and the rest of standard output.
    pub printed: Vec<String>,
    pub stdout: Receiver<String>,
}

impl Server {
    pub fn spawn(dir: &std::path::Path, extra_env: &[(&str, &str)]) -> Server {
        let mut cmd = jibber();
        cmd.args(["serve", "--port", "0"]);
        Server::start(cmd, dir, extra_env)
    }

    /// Runs `cmd` (which starts `jibber serve --port 0`, maybe through a wrapper) in `dir` with
    /// only `PATH` and `extra_env`, and waits for the address it prints.
    pub fn start(mut cmd: Command, dir: &std::path::Path, extra_env: &[(&str, &str)]) -> Server {
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn jibber");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let mut printed = Vec::new();
        let port = wait_line(&stdout, &mut printed, Duration::from_secs(30), |l| {
            l.trim()
                .strip_prefix("local:   http://localhost:")
                .map(|rest| rest.trim_end_matches('/').parse::<u16>().expect("port"))
        });
        Server {
            child,
            port,
            printed,
            stdout,
        }
    }

    /// Waits for the process to exit (after a signal), at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "jibber did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
