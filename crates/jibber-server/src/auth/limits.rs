//! Rate limits on login and registration, per client address and per username (governor).

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Keyed limiters for the auth routes.
pub struct AuthLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_username: DefaultKeyedRateLimiter<String>,
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
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt for this address and username; RATE_LIMITED with the wait otherwise.
    pub fn check(&self, ip: Option<IpAddr>, username: &str) -> Result<(), ApiError> {
        if let Some(ip) = ip
            && let Err(not_until) = self.per_ip.check_key(&ip)
        {
            metrics::counter!("jibber_rate_limited_total", "scope" => "auth_ip").increment(1);
            return Err(ApiError::rate_limited(
                not_until.wait_time_from(self.clock.now()).as_secs() + 1,
            ));
        }
        if let Err(not_until) = self.per_username.check_key(&username.to_lowercase()) {
            metrics::counter!("jibber_rate_limited_total", "scope" => "auth_username").increment(1);
            return Err(ApiError::rate_limited(
                not_until.wait_time_from(self.clock.now()).as_secs() + 1,
            ));
        }
        Ok(())
    }

    /// Forgets keys whose limits have fully recovered, so memory stays bounded.
    pub fn shrink(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_username.retain_recent();
        self.per_username.shrink_to_fit();
    }
}
