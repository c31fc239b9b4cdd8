//! The relay benchmark: pairs of users, one chat each; senders keep a window of `sendMessage`s
//! in flight (or send at a fixed rate), receivers acknowledge `receivedMessage`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use jibber_client::sio::{Inbound, SioError, Socket, Transport};
use jibber_proto::B64;
use jibber_proto::events::Ack;
use rand::RngCore;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::proc;
use crate::report::{Latency, histogram, latency_header};
use crate::setup::{self, Pair, Target};

#[derive(Debug, Clone)]
pub struct Config {
    /// Sender/receiver pairs (twice as many connections).
    pub pairs: usize,
    /// Measured time (after the warm-up).
    pub duration: Duration,
    pub warmup: Duration,
    /// Sends in flight per sender (closed loop).
    pub window: usize,
    /// Offered messages per second over all senders (open loop); None: closed loop.
    pub rate: Option<u64>,
    /// Open loop: every sender starts its schedule at the same instant, so the offered load
    /// arrives as one send per pair at once (how `--rate` worked up to session 11). Otherwise
    /// the senders' schedules are spread evenly over one interval.
    pub in_phase: bool,
    /// Ciphertext bytes per message.
    pub size: usize,
    pub transport: Transport,
    /// How long a send may wait for its acknowledgement.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pairs: 50,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            window: 8,
            rate: None,
            in_phase: false,
            size: 100,
            transport: Transport::WebSocket,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub pairs: usize,
    pub window: usize,
    pub offered_rate: Option<u64>,
    /// Open loop: whether the senders' schedules started together (see [`Config::in_phase`]).
    pub in_phase: bool,
    pub size: usize,
    pub seconds: f64,
    /// Messages received in the measured window, per second.
    pub delivered_per_second: f64,
    pub acked_per_second: f64,
    pub send_to_ack: Latency,
    pub send_to_receive: Latency,
    /// Over the whole run (warm-up and drain included).
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub errors: u64,
    /// Acknowledged but never received.
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub server_cpu_percent: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    /// Throughput over the ceiling's, when both ran.
    pub ratio_to_ceiling: Option<f64>,
}

impl Report {
    /// Every acknowledged message arrived once, in order, and nothing failed.
    pub fn is_correct(&self) -> bool {
        self.errors == 0 && self.lost == 0 && self.duplicates == 0 && self.out_of_order == 0
    }

    pub fn table(&self) -> String {
        let mut out = vec![
            format!(
                "relay → {}: {} pairs, window {}{}, {} B, {:.1} s measured",
                self.target,
                self.pairs,
                self.window,
                self.offered_rate
                    .map(|r| format!(
                        ", offered {r}/s{}",
                        if self.in_phase { " in phase" } else { "" }
                    ))
                    .unwrap_or_default(),
                self.size,
                self.seconds
            ),
            format!(
                "throughput       {:>9.0} delivered/s  {:>9.0} acked/s",
                self.delivered_per_second, self.acked_per_second
            ),
            latency_header(),
            self.send_to_ack.row("send → ack"),
            self.send_to_receive.row("send → receive"),
            format!(
                "totals           sent {} acked {} delivered {} errors {} lost {} duplicates {} out-of-order {}",
                self.sent,
                self.acked,
                self.delivered,
                self.errors,
                self.lost,
                self.duplicates,
                self.out_of_order
            ),
        ];
        if let (Some(cpu), Some(rss)) = (self.server_cpu_percent, self.server_rss_bytes) {
            out.push(format!(
                "server           {cpu:.0} % CPU, {:.1} MiB RSS",
                rss as f64 / 1048576.0
            ));
        }
        if let Some(r) = self.ratio_to_ceiling {
            out.push(format!("ratio to ceiling {:.1} %", r * 100.0));
        }
        out.join("\n")
    }
}

/// Nanoseconds from `origin` to `at`, written into the first 8 bytes of each ciphertext.
fn stamp(origin: Instant, at: Instant) -> u64 {
    at.duration_since(origin).as_nanos() as u64
}

/// When sender `index` of `senders` makes its first send in an open-loop run: now, plus its
/// share of one interval, so that the senders' schedules interleave evenly and the server sees
/// one send every `interval / senders` rather than `senders` sends at once (wrk2's schedule).
/// With `in_phase` every sender starts now.
fn first_send(
    now: Instant,
    interval: Duration,
    index: usize,
    senders: usize,
    in_phase: bool,
) -> Instant {
    if in_phase || senders == 0 {
        return now;
    }
    now + interval.mul_f64(index as f64 / senders as f64)
}

struct SenderResult {
    sent: u64,
    acked: u64,
    acked_in_window: u64,
    errors: u64,
    latency: Histogram<u64>,
}

struct ReceiverResult {
    delivered: u64,
    delivered_in_window: u64,
    duplicates: u64,
    out_of_order: u64,
    latency: Histogram<u64>,
}

/// Runs the relay against `target` and reports.
pub async fn run(target: &Target, cfg: &Config) -> anyhow::Result<Report> {
    let prefix = format!("b{}x", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let pairs = setup::pairs(target, cfg.pairs, &prefix).await?;
    let check_order = matches!(target, Target::Server { .. });

    // Connect everyone before the clock starts.
    let mut sockets = Vec::with_capacity(pairs.len());
    for p in &pairs {
        let receiver = setup::connect(target, &p.receiver, cfg.transport, None).await?;
        let sender = setup::connect(target, &p.sender, cfg.transport, None).await?;
        sockets.push((sender, receiver));
    }

    let origin = Instant::now();
    let window_start = origin + cfg.warmup;
    let window_end = window_start + cfg.duration;
    let stop = Arc::new(AtomicBool::new(false));
    let per_sender_interval = cfg
        .rate
        .map(|r| Duration::from_secs_f64(pairs.len() as f64 / r.max(1) as f64));

    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let schedule_start = Instant::now();
    let count = pairs.len();
    for (index, (p, ((sender, mut sender_events), (receiver, receiver_events)))) in
        pairs.iter().zip(sockets).enumerate()
    {
        let schedule = per_sender_interval
            .map(|i| (first_send(schedule_start, i, index, count, cfg.in_phase), i));
        // The sender's own events (messageSent) are read and dropped: an unread channel would
        // stall its connection.
        tokio::spawn(async move { while sender_events.recv().await.is_some() {} });
        receivers.push(tokio::spawn(receive(
            receiver,
            receiver_events,
            origin,
            window_start,
            window_end,
            check_order,
        )));
        senders.push(tokio::spawn(send(
            sender,
            p.clone(),
            cfg.clone(),
            origin,
            window_start,
            window_end,
            schedule,
            stop.clone(),
        )));
    }

    let cpu_start = {
        tokio::time::sleep_until(window_start.into()).await;
        target.pid().and_then(proc::sample)
    };
    tokio::time::sleep_until(window_end.into()).await;
    let cpu_end = target.pid().and_then(proc::sample);
    stop.store(true, Ordering::Relaxed);

    let mut report = Report {
        target: target.base().to_owned(),
        pairs: cfg.pairs,
        window: cfg.window,
        offered_rate: cfg.rate,
        in_phase: cfg.in_phase,
        size: cfg.size,
        seconds: cfg.duration.as_secs_f64(),
        delivered_per_second: 0.0,
        acked_per_second: 0.0,
        send_to_ack: Latency::default(),
        send_to_receive: Latency::default(),
        sent: 0,
        acked: 0,
        delivered: 0,
        errors: 0,
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        server_cpu_percent: match (&cpu_start, &cpu_end) {
            (Some(a), Some(b)) => Some(proc::cpu_percent(a, b)),
            _ => None,
        },
        server_rss_bytes: cpu_end.map(|s| s.rss_bytes),
        ratio_to_ceiling: None,
    };
    let mut ack_hist = histogram();
    let mut acked_in_window = 0;
    for s in senders {
        let r = s.await?;
        report.sent += r.sent;
        report.acked += r.acked;
        report.errors += r.errors;
        acked_in_window += r.acked_in_window;
        ack_hist.add(&r.latency)?;
    }
    // Every acknowledged message should now arrive; give the stragglers a moment.
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    let mut recv_hist = histogram();
    let mut delivered_in_window = 0;
    for r in receivers {
        let left = drain_deadline.saturating_duration_since(Instant::now());
        let r = match tokio::time::timeout(left.max(Duration::from_millis(1)), r).await {
            Ok(r) => r?,
            Err(_) => continue,
        };
        report.delivered += r.delivered;
        report.duplicates += r.duplicates;
        report.out_of_order += r.out_of_order;
        delivered_in_window += r.delivered_in_window;
        recv_hist.add(&r.latency)?;
    }
    report.lost = report.acked.saturating_sub(report.delivered);
    let secs = cfg.duration.as_secs_f64();
    report.delivered_per_second = delivered_in_window as f64 / secs;
    report.acked_per_second = acked_in_window as f64 / secs;
    report.send_to_ack = Latency::of(&ack_hist);
    report.send_to_receive = Latency::of(&recv_hist);
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn send(
    socket: Socket,
    pair: Pair,
    cfg: Config,
    origin: Instant,
    window_start: Instant,
    window_end: Instant,
    schedule: Option<(Instant, Duration)>,
    stop: Arc<AtomicBool>,
) -> SenderResult {
    let mut result = SenderResult {
        sent: 0,
        acked: 0,
        acked_in_window: 0,
        errors: 0,
        latency: histogram(),
    };
    let mut in_flight = FuturesUnordered::new();
    // Open loop: a send is due at each tick whatever the server does, and its latency counts
    // from when it was due, so a load generator that falls behind cannot hide a slow server
    // (no coordinated omission): late ticks are sent at once, not skipped.
    let mut ticker = schedule.map(|(first, i)| {
        let mut t = tokio::time::interval_at(first.into(), i);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut cipher = vec![0u8; cfg.size.max(8)];
    rand::thread_rng().fill_bytes(&mut cipher);
    let base = json!({
        "chatId": pair.chat,
        "receiver": pair.receiver.id,
        "iv": B64(vec![7; 12]),
        "signature": B64(vec![9; 64]),
        "senderPublicIdKey": pair.sender.id_key,
        "senderPublicSigningKey": pair.sender.signing_key,
        "receiverPublicIdKey": pair.receiver.id_key,
        "clientTimestamp": "2026-11-22T00:00:00Z",
    });
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let may_send = !stopping
            && match &ticker {
                Some(_) => true,
                None => in_flight.len() < cfg.window,
            };
        if stopping && in_flight.is_empty() {
            break;
        }
        let next_send = async {
            match ticker.as_mut() {
                Some(t) if may_send => t.tick().await.into_std(),
                None if may_send => Instant::now(),
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            Some((started, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                let answer: Result<Ack<serde_json::Value>, SioError> = answer;
                let done = Instant::now();
                match answer {
                    Ok(Ack { ok: true, .. }) => {
                        result.acked += 1;
                        if started >= window_start && done <= window_end {
                            result.acked_in_window += 1;
                            let us = done.duration_since(started).as_micros() as u64;
                            let _ = result.latency.record(us.max(1));
                        }
                    }
                    _ => result.errors += 1,
                }
            }
            started = next_send => {
                cipher[..8].copy_from_slice(&stamp(origin, started).to_le_bytes());
                let mut body = base.clone();
                body["cipher"] = json!(B64(cipher.clone()));
                // Time-ordered, as the SDK and the web client make them.
                body["tempMessageId"] = json!(uuid::Uuid::now_v7());
                let socket = socket.clone();
                let timeout = cfg.timeout;
                result.sent += 1;
                in_flight.push(async move {
                    let answer = socket.request("sendMessage", &body, timeout).await;
                    (started, answer)
                });
            }
            // A short wake-up so `stop` is noticed while nothing is in flight (open loop).
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    socket.close().await;
    result
}

async fn receive(
    socket: Socket,
    mut events: mpsc::Receiver<Inbound>,
    origin: Instant,
    window_start: Instant,
    window_end: Instant,
    check_order: bool,
) -> ReceiverResult {
    let mut r = ReceiverResult {
        delivered: 0,
        delivered_in_window: 0,
        duplicates: 0,
        out_of_order: 0,
        latency: histogram(),
    };
    let mut last_seq = 0i64;
    // Ends when the server closes the socket or the drain deadline cancels this task's wait.
    let quiet = Duration::from_secs(3);
    loop {
        let next = match tokio::time::timeout(quiet, events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            // Nothing for a while after the run: everything that will come has come.
            Err(_) if Instant::now() > window_end => break,
            Err(_) => continue,
        };
        let Inbound::Event { name, data, ack } = next else {
            break;
        };
        if name != "receivedMessage" {
            continue;
        }
        let now = Instant::now();
        let seq = data["sequenceNumber"].as_i64().unwrap_or(0);
        if check_order {
            if seq <= last_seq {
                r.duplicates += 1;
            } else if seq != last_seq + 1 {
                r.out_of_order += 1;
            }
        }
        last_seq = last_seq.max(seq);
        r.delivered += 1;
        let sent_at = data["cipher"]
            .as_str()
            .and_then(|c| B64::decode(c).ok())
            .and_then(|b| {
                b.get(..8)
                    .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
            });
        if let Some(ns) = sent_at {
            let sent = origin + Duration::from_nanos(ns);
            if sent >= window_start && now <= window_end {
                r.delivered_in_window += 1;
                let us = now.duration_since(sent).as_micros() as u64;
                let _ = r.latency.record(us.max(1));
            }
        }
        if let Some(ack) = ack {
            ack.send(&json!({ "ok": true })).await;
        }
    }
    socket.close().await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_senders_interleave_evenly_over_one_interval() {
        let now = Instant::now();
        let interval = Duration::from_millis(10);
        let starts: Vec<Duration> = (0..4)
            .map(|i| first_send(now, interval, i, 4, false) - now)
            .collect();
        assert_eq!(
            starts,
            [0, 2500, 5000, 7500].map(Duration::from_micros).to_vec()
        );
    }

    #[test]
    fn in_phase_senders_all_start_at_once() {
        let now = Instant::now();
        let interval = Duration::from_millis(10);
        for i in 0..4 {
            assert_eq!(first_send(now, interval, i, 4, true), now);
        }
    }
}
