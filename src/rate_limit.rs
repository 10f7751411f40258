//! Abuse limits: GCRA rate limiters (governor) for events, acks, stream
//! starts and new connections.
//!
//! [`RateLimits`] lives in the `App` and holds the keyed limiters shared
//! by every connection: new `/ai` connections per IP address (checked in
//! the handshake middleware) and streams started per user (the JWT `sub`,
//! or the client id when auth is off; checked when a stream is admitted).
//! Each [`Client`](crate::clients::Client) owns a [`ClientBudget`]: its event
//! budget and, apart, its `ai:ack` budget, because acks arrive every 32
//! tokens or 100 ms per live stream and are cumulative (a dropped one is
//! made good by the next), while other events come a few per minute. A
//! refusal is [`GatewayError::RateLimited`] with the wait until the next
//! request would pass. Keyed state is bounded by a sweep every minute
//! ([`RateLimits::sweep`]) that forgets keys whose bucket is full again.

use crate::config::RateLimitConfig;
use crate::error::{GatewayError, RateLimit};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

/// `per_minute` with a `burst`; `None` (no limit) when `per_minute` is 0.
fn quota(per_minute: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_minute)?;
    let burst = NonZeroU32::new(burst.max(1))?;
    Some(Quota::per_minute(rate).allow_burst(burst))
}

fn refused(
    limit: RateLimit,
    not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>,
) -> GatewayError {
    GatewayError::RateLimited {
        limit,
        retry_after: not_until.wait_time_from(DefaultClock::default().now()),
    }
}

/// The limiters shared by all connections.
pub struct RateLimits {
    connections: Option<DefaultKeyedRateLimiter<IpAddr>>,
    streams: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    config: RateLimitConfig,
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            connections: quota(config.connections_per_minute, config.connections_burst)
                .map(DefaultKeyedRateLimiter::keyed),
            streams: quota(config.streams_per_minute, config.streams_burst)
                .map(DefaultKeyedRateLimiter::keyed),
            config: config.clone(),
        }
    }

    /// A new connection from `ip`.
    pub fn connection(&self, ip: IpAddr) -> Result<(), GatewayError> {
        match &self.connections {
            Some(l) => l
                .check_key(&ip)
                .map_err(|n| refused(RateLimit::Connections, n)),
            None => Ok(()),
        }
    }

    /// A stream started by `user`.
    pub fn stream_start(&self, user: &Arc<str>) -> Result<(), GatewayError> {
        match &self.streams {
            Some(l) => l
                .check_key(user)
                .map_err(|n| refused(RateLimit::Streams, n)),
            None => Ok(()),
        }
    }

    /// A fresh per-client budget.
    pub fn budget(&self) -> ClientBudget {
        let c = &self.config;
        ClientBudget {
            events: quota(c.events_per_minute, c.events_burst)
                .map(DefaultDirectRateLimiter::direct),
            acks: quota(c.acks_per_minute, c.acks_burst).map(DefaultDirectRateLimiter::direct),
            acks_refused: AtomicBool::new(false),
        }
    }

    /// Forget keys whose bucket has refilled, so that memory follows the
    /// number of recently active IPs and users, not all ever seen.
    pub fn sweep(&self) {
        for l in self.connections.iter() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in self.streams.iter() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// How often [`RateLimits::sweep`] runs.
    pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
}

/// One client's budgets.
pub struct ClientBudget {
    events: Option<DefaultDirectRateLimiter>,
    acks: Option<DefaultDirectRateLimiter>,
    /// An over-limit ack has been answered since the last accepted one,
    /// so a flood of acks gets one error, not one per ack.
    acks_refused: AtomicBool,
}

/// What to do with an `ai:ack`.
#[derive(Debug, PartialEq, Eq)]
pub enum AckVerdict {
    Apply,
    /// Over the limit: drop it and tell the client (first refusal of a run).
    RefuseAndTell(Duration),
    /// Over the limit again: drop it quietly.
    Refuse,
}

impl ClientBudget {
    /// No limits (a client built outside a connection, as in unit tests).
    pub fn unlimited() -> Self {
        Self {
            events: None,
            acks: None,
            acks_refused: AtomicBool::new(false),
        }
    }

    /// Any event but `ai:ack`.
    pub fn event(&self) -> Result<(), GatewayError> {
        match &self.events {
            Some(l) => l.check().map_err(|n| refused(RateLimit::Events, n)),
            None => Ok(()),
        }
    }

    pub fn ack(&self) -> AckVerdict {
        let Some(l) = &self.acks else {
            return AckVerdict::Apply;
        };
        match l.check() {
            Ok(()) => {
                self.acks_refused.store(false, Relaxed);
                AckVerdict::Apply
            }
            Err(n) => {
                if self.acks_refused.swap(true, Relaxed) {
                    AckVerdict::Refuse
                } else {
                    AckVerdict::RefuseAndTell(n.wait_time_from(DefaultClock::default().now()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RateLimitConfig {
        RateLimitConfig {
            events_per_minute: 60,
            events_burst: 3,
            acks_per_minute: 60,
            acks_burst: 2,
            streams_per_minute: 60,
            streams_burst: 1,
            connections_per_minute: 0,
            connections_burst: 0,
        }
    }

    #[test]
    fn burst_then_refused_with_a_wait() {
        let limits = RateLimits::new(&config());
        let client = limits.budget();
        for _ in 0..3 {
            client.event().unwrap();
        }
        match client.event() {
            Err(GatewayError::RateLimited { retry_after, .. }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        let e = client.event().unwrap_err();
        assert_eq!(e.code(), "rate_limited");
        assert!(e.details()["retryAfterMs"].as_u64().unwrap() >= 1);
    }

    #[test]
    fn acks_refused_once_per_run() {
        let client = RateLimits::new(&config()).budget();
        assert_eq!(client.ack(), AckVerdict::Apply);
        assert_eq!(client.ack(), AckVerdict::Apply);
        assert!(matches!(client.ack(), AckVerdict::RefuseAndTell(_)));
        assert_eq!(client.ack(), AckVerdict::Refuse);
    }

    #[test]
    fn streams_are_per_user_and_zero_means_off() {
        let limits = RateLimits::new(&config());
        let (a, b): (Arc<str>, Arc<str>) = ("alice".into(), "bob".into());
        limits.stream_start(&a).unwrap();
        assert!(limits.stream_start(&a).is_err());
        limits.stream_start(&b).unwrap();
        for _ in 0..100 {
            limits.connection("127.0.0.1".parse().unwrap()).unwrap();
        }
        limits.sweep();
    }
}
