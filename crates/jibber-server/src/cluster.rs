//! The link between nodes: Redis (standalone, 7 or newer) when `redis_url` is set, nothing
//! otherwise. This module only speaks Redis; `realtime::nodes` decides what to do with it.
//!
//! - **Relays**: one pub/sub channel `<prefix>:relay`. A node publishes what its own sockets
//!   got (`realtime::notify::Relay`); every other node applies it to its sockets. One
//!   publisher task sends them in the order they were queued.
//! - **Nodes**: `<prefix>:node:<id>` is a heartbeat key with a TTL (`presence_ttl`), renewed
//!   three times per TTL; `<prefix>:nodes` lists the nodes that registered.
//! - **Presence**: `<prefix>:user:<id>:nodes` holds the nodes where a user has devices,
//!   `<prefix>:node:<id>:users` the users of a node, `<prefix>:user:<id>:active` each device's
//!   open chat (`<node>/<socket>` → chat). A node counts only while its heartbeat key lives, so
//!   a dead node's users are offline once its key expires; the first survivor to notice reaps
//!   the node (an atomic `SREM` decides who) and announces them.
//! - **Rate limits**: GCRA in one Lua script on Redis time (`<prefix>:rate:<key>`): socket events
//!   per user and event, login and registration attempts per address and per username.
//!
//! Every call fails fast while the link is down ([`Cluster::is_up`]); callers fall back to
//! what this node knows. The monitor (`realtime::nodes`) probes and brings it back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ProtocolVersion, PushInfo, PushKind, Script, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::Settings;

/// Relays queued for publishing (beyond this, a relay is dropped and the others resync).
const OUTBOX: usize = 10_000;
/// Relays received and not yet applied (beyond this, this node's sockets resync).
const INBOX: usize = 10_000;

/// What arrives from another node.
#[derive(Debug)]
pub enum Inbound {
    /// A relay (JSON) to apply to this node's sockets.
    Relay(Vec<u8>),
    /// Another node lost relays: this node's sockets should fetch `/sync`.
    Resync,
}

/// What the publisher task takes from the outbox.
#[derive(Debug)]
pub enum Out {
    /// A relay (JSON) for the other nodes.
    Relay(Vec<u8>),
    /// Answered once everything queued before it was published.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The Redis link, or none for a single node.
pub struct Cluster {
    link: Option<Link>,
}

struct Link {
    conn: ConnectionManager,
    node: String,
    prefix: String,
    ttl: Duration,
    channel: String,
    up: AtomicBool,
    /// A relay could not be queued: publish a resync request before the next one.
    lost: Arc<AtomicBool>,
    outbox: mpsc::Sender<Out>,
    queues: Mutex<Option<Queues>>,
}

/// The receiving ends, taken once by the tasks that drain them.
pub struct Queues {
    pub outbox: mpsc::Receiver<Out>,
    pub inbox: mpsc::Receiver<Inbound>,
    /// Set when a relay did not fit in the inbox: this node's sockets must resync.
    pub inbox_lost: Arc<AtomicBool>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.link.as_ref().map(|l| &l.node))
            .field("up", &self.is_up())
            .finish()
    }
}

/// Redis is not configured, or the link is down.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no Redis link")]
    Down,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
}

/// Longest wait for one Redis call on a hot path.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

// Scripts: keys are built from the prefix inside the scripts, which standalone Redis allows.

/// ARGV: prefix, node, user. Adds the node to the user's nodes; returns how many OTHER live
/// nodes have devices of the user (dead ones are dropped on the way).
const JOIN: &str = r"
local p, node, user = ARGV[1], ARGV[2], ARGV[3]
local key = p .. ':user:' .. user .. ':nodes'
redis.call('SADD', key, node)
redis.call('SADD', p .. ':node:' .. node .. ':users', user)
local others = 0
for _, n in ipairs(redis.call('SMEMBERS', key)) do
  if n ~= node then
    if redis.call('EXISTS', p .. ':node:' .. n) == 1 then others = others + 1
    else redis.call('SREM', key, n) end
  end
end
return others
";

/// ARGV: prefix, node, user. The reverse of JOIN (with the user's open chats on this node);
/// returns the other live nodes of the user.
const LEAVE: &str = r"
local p, node, user = ARGV[1], ARGV[2], ARGV[3]
local key = p .. ':user:' .. user .. ':nodes'
redis.call('SREM', key, node)
redis.call('SREM', p .. ':node:' .. node .. ':users', user)
local akey = p .. ':user:' .. user .. ':active'
for _, f in ipairs(redis.call('HKEYS', akey)) do
  if string.sub(f, 1, #node + 1) == node .. '/' then redis.call('HDEL', akey, f) end
end
local others = 0
for _, n in ipairs(redis.call('SMEMBERS', key)) do
  if redis.call('EXISTS', p .. ':node:' .. n) == 1 then others = others + 1
  else redis.call('SREM', key, n) end
end
return others
";

/// ARGV: prefix, node, user, then device and chat pairs. Replaces what this node recorded of
/// the user's open chats by the pairs (after an outage, when changes could not be written).
const RESET_ACTIVE: &str = r"
local p, node, user = ARGV[1], ARGV[2], ARGV[3]
local akey = p .. ':user:' .. user .. ':active'
for _, f in ipairs(redis.call('HKEYS', akey)) do
  if string.sub(f, 1, #node + 1) == node .. '/' then redis.call('HDEL', akey, f) end
end
for i = 4, #ARGV, 2 do
  redis.call('HSET', akey, node .. '/' .. ARGV[i], ARGV[i + 1])
end
return 0
";

/// ARGV: prefix, user... Returns 1 or 0 per user: online on some live node.
const ONLINE: &str = r"
local p = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local on = 0
  for _, n in ipairs(redis.call('SMEMBERS', p .. ':user:' .. ARGV[i] .. ':nodes')) do
    if redis.call('EXISTS', p .. ':node:' .. n) == 1 then on = 1; break end
  end
  out[#out + 1] = on
end
return out
";

/// ARGV: prefix, user, chat. 1 when a device on a live node has the chat open.
const HAS_ACTIVE: &str = r"
local p, user, chat = ARGV[1], ARGV[2], ARGV[3]
local all = redis.call('HGETALL', p .. ':user:' .. user .. ':active')
for i = 1, #all, 2 do
  if all[i + 1] == chat then
    local node = string.match(all[i], '^([^/]+)/')
    if node and redis.call('EXISTS', p .. ':node:' .. node) == 1 then return 1 end
  end
end
return 0
";

/// ARGV: prefix, dead node. Claims the node (only one caller wins), removes its traces and
/// returns its users who are online nowhere else.
const REAP: &str = r"
local p, dead = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. ':node:' .. dead) == 1 then return {} end
if redis.call('SREM', p .. ':nodes', dead) == 0 then return {} end
local gone = {}
local ukey = p .. ':node:' .. dead .. ':users'
for _, user in ipairs(redis.call('SMEMBERS', ukey)) do
  local key = p .. ':user:' .. user .. ':nodes'
  redis.call('SREM', key, dead)
  local akey = p .. ':user:' .. user .. ':active'
  for _, f in ipairs(redis.call('HKEYS', akey)) do
    if string.sub(f, 1, #dead + 1) == dead .. '/' then redis.call('HDEL', akey, f) end
  end
  local alive = false
  for _, n in ipairs(redis.call('SMEMBERS', key)) do
    if redis.call('EXISTS', p .. ':node:' .. n) == 1 then alive = true; break end
  end
  if not alive then gone[#gone + 1] = user end
end
redis.call('DEL', ukey)
return gone
";

/// KEYS: the bucket. ARGV: interval (µs per event), burst. GCRA on Redis time: 0 when the
/// event may pass, else the wait in µs.
const RATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - interval * tonumber(ARGV[2])
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

impl Cluster {
    /// A single node: no Redis.
    pub fn disabled() -> Cluster {
        Cluster { link: None }
    }

    /// The link the settings name (none without `redis_url`). Connects lazily: a node starts
    /// even while Redis is down, and serves its own clients until the monitor finds Redis.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Cluster> {
        let Some(url) = &settings.redis_url else {
            return Ok(Cluster::disabled());
        };
        let client = redis::Client::open(url.as_str())?;
        let info = client.get_connection_info().clone();
        let redis_info = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(redis_info))?;
        let prefix = settings.redis_prefix.clone();
        let channel = format!("{prefix}:relay");
        let (inbox_tx, inbox) = mpsc::channel(INBOX);
        let inbox_lost = Arc::new(AtomicBool::new(false));
        let node = settings.node_id.clone();
        let sender = {
            let (channel, node, lost) = (channel.clone(), node.clone(), inbox_lost.clone());
            move |msg: PushInfo| -> Result<(), std::convert::Infallible> {
                if let Some(inbound) = decode_push(msg, &channel, &node)
                    && inbox_tx.try_send(inbound).is_err()
                {
                    metrics::counter!("jibber_relay_dropped_total", "side" => "inbox").increment(1);
                    lost.store(true, Ordering::Relaxed);
                }
                Ok(())
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_push_sender(sender)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = client.get_connection_manager_lazy(config)?;
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        metrics::gauge!("jibber_redis_up").set(0.0);
        Ok(Cluster {
            link: Some(Link {
                conn,
                node,
                ttl: settings.presence_ttl,
                prefix,
                channel,
                up: AtomicBool::new(false),
                lost: Arc::new(AtomicBool::new(false)),
                outbox,
                queues: Mutex::new(Some(Queues {
                    outbox: outbox_rx,
                    inbox,
                    inbox_lost,
                })),
            }),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.link.is_some()
    }

    /// Whether the link works (false without Redis).
    pub fn is_up(&self) -> bool {
        self.link
            .as_ref()
            .is_some_and(|l| l.up.load(Ordering::Relaxed))
    }

    /// This node's id (None without Redis).
    pub fn node(&self) -> Option<&str> {
        self.link.as_ref().map(|l| l.node.as_str())
    }

    /// The heartbeat interval: a third of the TTL.
    pub fn beat(&self) -> Duration {
        self.link
            .as_ref()
            .map_or(Duration::from_secs(5), |l| l.ttl / 3)
    }

    /// Records the link's state; returns the previous one.
    pub fn set_up(&self, up: bool) -> bool {
        let Some(l) = &self.link else { return false };
        metrics::gauge!("jibber_redis_up").set(if up { 1.0 } else { 0.0 });
        let before = l.up.swap(up, Ordering::Relaxed);
        if before != up {
            if up {
                tracing::info!(node = %l.node, "redis link is up");
            } else {
                tracing::warn!(node = %l.node, "redis link is down; serving this node's clients only");
            }
        }
        before
    }

    /// The queues' receiving ends (once).
    pub fn take_queues(&self) -> Option<Queues> {
        self.link.as_ref().and_then(|l| {
            l.queues
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        })
    }

    fn live(&self) -> Result<&Link, LinkError> {
        match &self.link {
            Some(l) if l.up.load(Ordering::Relaxed) => Ok(l),
            _ => Err(LinkError::Down),
        }
    }

    /// Runs one call with the hot-path timeout; a failure marks the link down.
    async fn call<T>(
        &self,
        f: impl AsyncFnOnce(&Link, ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, LinkError> {
        let link = self.live()?;
        let result = match tokio::time::timeout(CALL_TIMEOUT, f(link, link.conn.clone())).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => LinkError::Redis(e),
            Err(_) => LinkError::Timeout,
        };
        // Only a lost connection takes the link down; a refused command is this call's failure.
        let lost = match &result {
            LinkError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
            }
            _ => true,
        };
        tracing::warn!(error = %result, "redis call failed");
        if lost {
            self.set_up(false);
        }
        Err(result)
    }

    /// Queues a relay for the other nodes (dropped, and counted, while the link is down: every
    /// node tells its sockets to resync when it comes back).
    pub fn relay(&self, body: Vec<u8>) {
        let Ok(link) = self.live() else {
            if self.is_enabled() {
                metrics::counter!("jibber_relay_dropped_total", "side" => "down").increment(1);
            }
            return;
        };
        if link.outbox.try_send(Out::Relay(body)).is_err() {
            metrics::counter!("jibber_relay_dropped_total", "side" => "outbox").increment(1);
            link.lost.store(true, Ordering::Relaxed);
        }
    }

    /// Publishes queued relays in order until the queue closes (the publisher task).
    pub async fn publish_loop(&self, mut outbox: mpsc::Receiver<Out>) {
        let Some(link) = &self.link else { return };
        while let Some(out) = outbox.recv().await {
            let body = match out {
                Out::Relay(body) => body,
                Out::Flush(done) => {
                    let _ = done.send(());
                    continue;
                }
            };
            if link.lost.swap(false, Ordering::Relaxed) {
                let _ = self.publish(link, b'S', &[]).await;
            }
            if self.publish(link, b'R', &body).await.is_err() {
                link.lost.store(true, Ordering::Relaxed);
            }
        }
    }

    async fn publish(&self, link: &Link, kind: u8, body: &[u8]) -> Result<(), LinkError> {
        let mut frame = Vec::with_capacity(body.len() + link.node.len() + 2);
        frame.push(kind);
        frame.extend_from_slice(link.node.as_bytes());
        frame.push(b' ');
        frame.extend_from_slice(body);
        let channel = link.channel.clone();
        self.call(async move |_, mut c| c.publish::<_, _, ()>(channel, frame).await)
            .await
    }

    /// Probes Redis and renews this node's heartbeat (the monitor). Returns whether the node
    /// was still registered (false the first time, or after it was taken for dead).
    pub async fn heartbeat(&self) -> Result<bool, LinkError> {
        let Some(link) = &self.link else {
            return Err(LinkError::Down);
        };
        let key = format!("{}:node:{}", link.prefix, link.node);
        let ttl = u64::try_from(link.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut conn = link.conn.clone();
        let beat = async {
            let (previous, _): (Option<String>, i64) = redis::pipe()
                .cmd("SET")
                .arg(&key)
                .arg("1")
                .arg("PX")
                .arg(ttl)
                .arg("GET")
                .cmd("SADD")
                .arg(format!("{}:nodes", link.prefix))
                .arg(&link.node)
                .query_async(&mut conn)
                .await?;
            conn.subscribe(&link.channel).await?;
            Ok::<_, redis::RedisError>(previous.is_some())
        };
        match tokio::time::timeout(CALL_TIMEOUT, beat).await {
            Ok(Ok(registered)) => Ok(registered),
            Ok(Err(e)) => Err(LinkError::Redis(e)),
            Err(_) => Err(LinkError::Timeout),
        }
    }

    /// Nodes that registered but whose heartbeat expired: each is reaped by exactly one
    /// survivor, which gets the users that went offline with it.
    pub async fn reap(&self) -> Result<Vec<Uuid>, LinkError> {
        let nodes: Vec<String> = self
            .call(async |l, mut c| c.smembers(format!("{}:nodes", l.prefix)).await)
            .await?;
        let mut gone = Vec::new();
        for dead in nodes {
            let link = self.live()?;
            if dead == link.node {
                continue;
            }
            let users: Vec<String> = self
                .call(async |l, mut c| {
                    Script::new(REAP)
                        .arg(&l.prefix)
                        .arg(&dead)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            if !users.is_empty() {
                tracing::info!(node = %dead, users = users.len(), "a node died; its users went offline");
            }
            gone.extend(users.iter().filter_map(|u| Uuid::parse_str(u).ok()));
        }
        Ok(gone)
    }

    /// Waits (at most `timeout`) until every relay queued so far is published.
    pub async fn flush(&self, timeout: Duration) {
        let Some(link) = &self.link else { return };
        let (done, published) = tokio::sync::oneshot::channel();
        if link.outbox.try_send(Out::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(timeout, published).await;
        }
    }

    /// Leaves the cluster on a clean shutdown (after the sockets are gone).
    pub async fn leave_cluster(&self) {
        let _ = self
            .call(async |l, mut c| {
                redis::pipe()
                    .del(format!("{}:node:{}", l.prefix, l.node))
                    .srem(format!("{}:nodes", l.prefix), &l.node)
                    .del(format!("{}:node:{}:users", l.prefix, l.node))
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    async fn presence_script(&self, script: &str, user: Uuid) -> Result<i64, LinkError> {
        self.call(async |l, mut c| {
            Script::new(script)
                .arg(&l.prefix)
                .arg(&l.node)
                .arg(user.to_string())
                .invoke_async(&mut c)
                .await
        })
        .await
    }

    /// A user's first device on this node: how many other nodes have devices of the user.
    pub async fn join(&self, user: Uuid) -> Result<i64, LinkError> {
        self.presence_script(JOIN, user).await
    }

    /// A user's last device on this node left: how many other nodes still have devices.
    pub async fn leave(&self, user: Uuid) -> Result<i64, LinkError> {
        self.presence_script(LEAVE, user).await
    }

    /// The users Redis lists on this node (which may be stale after an outage).
    pub async fn node_users(&self) -> Result<Vec<Uuid>, LinkError> {
        let users: Vec<String> = self
            .call(async |l, mut c| {
                c.smembers(format!("{}:node:{}:users", l.prefix, l.node))
                    .await
            })
            .await?;
        Ok(users
            .iter()
            .filter_map(|u| Uuid::parse_str(u).ok())
            .collect())
    }

    /// Replaces this node's record of `user`'s open chats by `open` (device, chat).
    pub async fn reset_active(&self, user: Uuid, open: &[(String, Uuid)]) -> Result<(), LinkError> {
        self.call(async |l, mut c| {
            let script = Script::new(RESET_ACTIVE);
            let mut inv = script.arg(&l.prefix);
            inv.arg(&l.node).arg(user.to_string());
            for (device, chat) in open {
                inv.arg(device).arg(chat.to_string());
            }
            let done: redis::RedisResult<i64> = inv.invoke_async(&mut c).await;
            done.map(|_| ())
        })
        .await
    }

    /// Which of `users` are online on some live node.
    pub async fn online(&self, users: &[Uuid]) -> Result<Vec<bool>, LinkError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let flags: Vec<i64> = self
            .call(async |l, mut c| {
                let script = Script::new(ONLINE);
                let mut inv = script.arg(&l.prefix);
                for u in users {
                    inv.arg(u.to_string());
                }
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(flags.into_iter().map(|f| f == 1).collect())
    }

    /// Records the chat a device of this node has open (None: none, or the device left).
    pub async fn set_active(
        &self,
        user: Uuid,
        device: &str,
        chat: Option<Uuid>,
    ) -> Result<(), LinkError> {
        self.call(async |l, mut c| {
            let key = format!("{}:user:{user}:active", l.prefix);
            let field = format!("{}/{device}", l.node);
            match chat {
                Some(chat) => c.hset(key, field, chat.to_string()).await,
                None => c.hdel(key, field).await,
            }
        })
        .await
    }

    /// Whether a device of `user` on a live node has `chat` open.
    pub async fn has_active(&self, user: Uuid, chat: Uuid) -> Result<bool, LinkError> {
        let found: i64 = self
            .call(async |l, mut c| {
                Script::new(HAS_ACTIVE)
                    .arg(&l.prefix)
                    .arg(user.to_string())
                    .arg(chat.to_string())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(found == 1)
    }

    /// Counts one event of `key` in a bucket shared by every node: one event per `interval`,
    /// bursts of `burst`. Returns the wait before the next one may pass (None: this one passes).
    /// While Redis is unavailable `local` answers instead (each node then limits alone).
    pub async fn limit(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
        local: impl FnOnce() -> Option<Duration>,
    ) -> Option<Duration> {
        let micros = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let wait: Result<i64, LinkError> = self
            .call(async |l, mut c| {
                Script::new(RATE)
                    .key(format!("{}:rate:{key}", l.prefix))
                    .arg(micros)
                    .arg(burst)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        match wait {
            Ok(wait) => (wait > 0).then(|| Duration::from_micros(u64::try_from(wait).unwrap_or(0))),
            Err(_) => local(),
        }
    }

    /// Round trip to Redis (for /health). A failure marks the link down at once (so health and
    /// metrics agree); only the monitor marks it up again.
    pub async fn ping(&self) -> Result<Duration, LinkError> {
        let Some(link) = &self.link else {
            return Err(LinkError::Down);
        };
        let start = Instant::now();
        let mut conn = link.conn.clone();
        let result = match tokio::time::timeout(
            Duration::from_secs(1),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(start.elapsed()),
            Ok(Err(e)) => LinkError::Redis(e),
            Err(_) => LinkError::Timeout,
        };
        self.set_up(false);
        Err(result)
    }
}

/// A pub/sub message on the relay channel from another node.
fn decode_push(msg: PushInfo, channel: &str, node: &str) -> Option<Inbound> {
    if msg.kind != PushKind::Message || msg.data.len() < 2 {
        return None;
    }
    let mut data = msg.data.into_iter();
    let (Some(Value::BulkString(chan)), Some(Value::BulkString(frame))) =
        (data.next(), data.next())
    else {
        return None;
    };
    if chan != channel.as_bytes() {
        return None;
    }
    let (&kind, rest) = frame.split_first()?;
    let space = rest.iter().position(|b| *b == b' ')?;
    if &rest[..space] == node.as_bytes() {
        return None;
    }
    let body = rest[space + 1..].to_vec();
    match kind {
        b'R' => Some(Inbound::Relay(body)),
        b'S' => Some(Inbound::Resync),
        _ => None,
    }
}
