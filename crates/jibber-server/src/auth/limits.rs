//! Rate limits on login and registration, per client address and per username: in Redis when
//! the node has it (shared by all nodes), else (or while Redis is down) governor on this node.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::cluster::Cluster;
use crate::error::ApiError;

/// Keyed limiters for the auth routes.
pub struct AuthLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_username: DefaultKeyedRateLimiter<String>,
    ip_rate: u32,
    username_rate: u32,
    clock: DefaultClock,
}

impl std::fmt::Debug for AuthLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLimits").finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl AuthLimits {
    pub fn new(per_ip: u32, per_username: u32) -> Self {
        AuthLimits {
            per_ip: RateLimiter::keyed(per_minute(per_ip)),
            per_username: RateLimiter::keyed(per_minute(per_username)),
            ip_rate: per_ip.max(1),
            username_rate: per_username.max(1),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt for this address and username; RATE_LIMITED with the wait otherwise.
    pub async fn check(
        &self,
        cluster: &Cluster,
        ip: Option<IpAddr>,
        username: &str,
    ) -> Result<(), ApiError> {
        let minute = Duration::from_secs(60);
        if let Some(ip) = ip {
            let wait = cluster
                .limit(
                    &format!("auth-ip:{ip}"),
                    minute / self.ip_rate,
                    self.ip_rate,
                    || self.local_wait(self.per_ip.check_key(&ip)),
                )
                .await;
            refuse(wait, "auth_ip")?;
        }
        let name = username.to_lowercase();
        let wait = cluster
            .limit(
                &format!("auth-user:{name}"),
                minute / self.username_rate,
                self.username_rate,
                || self.local_wait(self.per_username.check_key(&name)),
            )
            .await;
        refuse(wait, "auth_username")
    }

    fn local_wait(
        &self,
        checked: Result<(), governor::NotUntil<governor::clock::QuantaInstant>>,
    ) -> Option<Duration> {
        checked
            .err()
            .map(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose limits have fully recovered, so memory stays bounded.
    pub fn shrink(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_username.retain_recent();
        self.per_username.shrink_to_fit();
    }
}

/// RATE_LIMITED (with `Retry-After` in whole seconds) when there is a wait.
fn refuse(wait: Option<Duration>, scope: &'static str) -> Result<(), ApiError> {
    match wait {
        None => Ok(()),
        Some(wait) => {
            metrics::counter!("jibber_rate_limited_total", "scope" => scope).increment(1);
            Err(ApiError::rate_limited(wait.as_secs() + 1))
        }
    }
}
