//! The Tokio runtime `jibber serve` runs on.
//!
//! On one CPU the server runs Tokio's current-thread scheduler; on more, the multi-thread
//! scheduler with one worker per CPU. A multi-thread runtime with a single worker does the same
//! work as a current-thread one plus the bookkeeping for stealing work between workers that it
//! never has (atomic run queues, searching for idle workers, waking the driver through another
//! thread), and on one core that cost is the server's: with the current-thread scheduler the
//! relay on one core delivered 21 % more messages per second (medians of four alternating
//! pairs) at lower CPU (BENCHMARKS.md, session 12). The bare relay that `jibber bench
//! --ceiling` compares against already ran on a current-thread runtime. The storage threads
//! (SQLite's batch writer, `spawn_blocking`) run beside it either way.
//!
//! "One CPU" is what the process may use: `std::thread::available_parallelism` counts the CPUs
//! of its affinity mask and its cgroup's CPU quota (`taskset -c 0`, a container with
//! `--cpus=1`). `TOKIO_WORKER_THREADS`, Tokio's own setting, overrides the count.

use tokio::runtime::{Builder, Runtime};

/// How many workers the server's runtime gets: `TOKIO_WORKER_THREADS` when it is a positive
/// number, else the CPUs the process may use.
pub fn worker_threads(env: Option<&str>, cpus: usize) -> usize {
    env.and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(cpus)
        .max(1)
}

/// The runtime for `jibber serve`: current-thread for one worker, multi-thread otherwise.
pub fn server_runtime() -> std::io::Result<Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = std::env::var("TOKIO_WORKER_THREADS").ok();
    match worker_threads(env.as_deref(), cpus) {
        1 => Builder::new_current_thread().enable_all().build(),
        n => Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cpu_gets_one_worker_and_more_get_one_each() {
        assert_eq!(worker_threads(None, 1), 1);
        assert_eq!(worker_threads(None, 8), 8);
    }

    #[test]
    fn tokio_worker_threads_overrides_the_cpu_count_when_it_is_a_positive_number() {
        assert_eq!(worker_threads(Some("1"), 8), 1);
        assert_eq!(worker_threads(Some(" 4 "), 1), 4);
        assert_eq!(worker_threads(Some("0"), 8), 8);
        assert_eq!(worker_threads(Some("many"), 2), 2);
        assert_eq!(worker_threads(None, 0), 1);
    }

    #[test]
    fn the_server_runtime_runs_tasks_and_blocking_work() {
        let rt = server_runtime().expect("runtime");
        let got = rt.block_on(async {
            let blocking = tokio::task::spawn_blocking(|| 20).await.expect("blocking");
            let task = tokio::spawn(async { 22 }).await.expect("task");
            blocking + task
        });
        assert_eq!(got, 42);
    }
}
