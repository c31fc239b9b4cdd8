//! The leak soak: the relay at a fixed offered rate for a long time (30 minutes by default),
//! with the server's memory and CPU sampled every few seconds. After a warm-up (caches, pools
//! and allocator arenas filling), memory must stay flat: the report fits a least-squares line
//! through the samples after the warm-up and calls the run flat when that line grows by less
//! than [`FLAT_GROWTH`] of the memory at the end of the warm-up over the rest of the run. The
//! relay's own correctness checks (nothing lost, doubled or reordered) hold as in `relay`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use crate::proc;
use crate::relay;
use crate::setup::Target;

/// Growth of the fitted line after the warm-up, as a fraction of the RSS at its end, below
/// which the run counts as flat.
pub const FLAT_GROWTH: f64 = 0.05;

#[derive(Debug, Clone)]
pub struct Config {
    /// The relay load; its `duration` is the soak's length and `rate` should be set.
    pub relay: relay::Config,
    /// Time excluded from the flatness check.
    pub warmup: Duration,
    pub sample_every: Duration,
}

/// One reading of the server.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub seconds: f64,
    pub rss_bytes: u64,
    /// CPU over the interval before this point, in percent of one core.
    pub cpu_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub relay: relay::Report,
    pub warmup_seconds: f64,
    pub samples: Vec<Point>,
    pub memory: Option<Memory>,
}

/// Memory after the warm-up.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Memory {
    pub rss_at_warmup_end: u64,
    pub rss_at_end: u64,
    pub rss_max: u64,
    /// Slope of the least-squares line, KiB per minute.
    pub slope_kib_per_minute: f64,
    /// Growth of that line from the end of the warm-up to the end, in percent of
    /// `rss_at_warmup_end`.
    pub fitted_growth_percent: f64,
    pub flat: bool,
}

/// Fits the samples after `warmup_seconds`; None with fewer than three of them.
pub fn analyse(samples: &[Point], warmup_seconds: f64) -> Option<Memory> {
    let after: Vec<&Point> = samples
        .iter()
        .filter(|p| p.seconds >= warmup_seconds)
        .collect();
    if after.len() < 3 {
        return None;
    }
    let n = after.len() as f64;
    let mean_t = after.iter().map(|p| p.seconds).sum::<f64>() / n;
    let mean_r = after.iter().map(|p| p.rss_bytes as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for p in &after {
        num += (p.seconds - mean_t) * (p.rss_bytes as f64 - mean_r);
        den += (p.seconds - mean_t).powi(2);
    }
    let slope = if den > 0.0 { num / den } else { 0.0 }; // bytes per second
    let first = after[0];
    let last = after[after.len() - 1];
    let span = last.seconds - first.seconds;
    let base = first.rss_bytes.max(1) as f64;
    let growth = slope * span / base;
    Some(Memory {
        rss_at_warmup_end: first.rss_bytes,
        rss_at_end: last.rss_bytes,
        rss_max: after.iter().map(|p| p.rss_bytes).max().unwrap_or(0),
        slope_kib_per_minute: slope * 60.0 / 1024.0,
        fitted_growth_percent: growth * 100.0,
        flat: growth < FLAT_GROWTH,
    })
}

/// Runs the soak. The target must have a process id (spawned, or `--server-pid`).
pub async fn run(target: &Target, cfg: &Config) -> anyhow::Result<Report> {
    let pid = target
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the soak samples the server's memory: give its pid"))?;
    let done = Arc::new(Notify::new());
    let sampler = {
        let done = done.clone();
        let every = cfg.sample_every;
        tokio::spawn(async move {
            let start = Instant::now();
            let mut points = Vec::new();
            let mut previous = proc::sample(pid);
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = done.notified() => break,
                }
                let Some(now) = proc::sample(pid) else { break };
                points.push(Point {
                    seconds: start.elapsed().as_secs_f64(),
                    rss_bytes: now.rss_bytes,
                    cpu_percent: previous.map_or(0.0, |p| proc::cpu_percent(&p, &now)),
                });
                previous = Some(now);
            }
            points
        })
    };
    let relay = relay::run(target, &cfg.relay).await;
    done.notify_one();
    let samples = sampler.await?;
    let relay = relay?;
    let warmup_seconds = cfg.warmup.as_secs_f64();
    let memory = analyse(&samples, warmup_seconds);
    Ok(Report {
        relay,
        warmup_seconds,
        samples,
        memory,
    })
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = vec![self.relay.table(), String::new()];
        out.push("    time      RSS (MiB)   CPU %".to_owned());
        // At most about 30 rows: every k-th sample, and always the last.
        let k = self.samples.len().div_ceil(30).max(1);
        for (i, p) in self.samples.iter().enumerate() {
            if i % k == 0 || i + 1 == self.samples.len() {
                out.push(format!(
                    "{:>7.0} s  {:>10.1}  {:>6.0}",
                    p.seconds,
                    p.rss_bytes as f64 / 1048576.0,
                    p.cpu_percent
                ));
            }
        }
        match &self.memory {
            Some(m) => out.push(format!(
                "after the {:.0} s warm-up: {:.1} → {:.1} MiB (max {:.1}), slope {:.1} KiB/min, fitted growth {:.2} % → {}",
                self.warmup_seconds,
                m.rss_at_warmup_end as f64 / 1048576.0,
                m.rss_at_end as f64 / 1048576.0,
                m.rss_max as f64 / 1048576.0,
                m.slope_kib_per_minute,
                m.fitted_growth_percent,
                if m.flat { "flat" } else { "GROWING" }
            )),
            None => out.push("too few samples after the warm-up to judge memory".to_owned()),
        }
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> Vec<Point> {
        (0..=60)
            .map(|i| {
                let t = i as f64 * 30.0;
                Point {
                    seconds: t,
                    rss_bytes: f(t) as u64,
                    cpu_percent: 50.0,
                }
            })
            .collect()
    }

    #[test]
    fn a_warm_up_climb_then_noise_is_flat() {
        // Climbs to 40 MiB in the first five minutes, then wobbles by ±1 MiB.
        let mib = 1048576.0;
        let s = series(|t| {
            if t < 300.0 {
                20.0 * mib + t / 300.0 * 20.0 * mib
            } else {
                40.0 * mib + ((t / 30.0) as i64 % 3 - 1) as f64 * mib
            }
        });
        let m = analyse(&s, 300.0).expect("enough samples");
        assert!(m.flat, "{m:?}");
        assert!(m.fitted_growth_percent.abs() < 2.0, "{m:?}");
    }

    #[test]
    fn a_steady_leak_is_not_flat() {
        // 40 MiB, growing by 100 KiB a minute: 2.5 MiB over 25 minutes, over 6 %.
        let s = series(|t| 40.0 * 1048576.0 + t / 60.0 * 100.0 * 1024.0);
        let m = analyse(&s, 300.0).expect("enough samples");
        assert!(!m.flat, "{m:?}");
        assert!((m.slope_kib_per_minute - 100.0).abs() < 0.5, "{m:?}");
    }

    #[test]
    fn too_few_samples_are_no_verdict() {
        let s = series(|_| 1.0);
        assert_eq!(analyse(&s[..2], 0.0), None);
        assert_eq!(analyse(&s, 1e9), None);
    }
}
