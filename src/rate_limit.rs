//! Abuse limits: GCRA rate limiters (governor) for events, acks, stream
//! starts and new connections.
//!
//! [`RateLimits`] lives in the `App` and holds the keyed limiters shared
//! by every connection, all keyed by the real client address (see
//! `http::peer`) or the user: new Engine.IO sessions per address (checked
//! by the connection gate in front of socketioxide), new `/ai` joins per
//! address (the handshake middleware; one session may join many times),
//! and streams started per user (the JWT `sub`, or the client address
//! when auth is off; checked when a stream is admitted). Each
//! [`Client`](crate::clients::Client) owns a [`ClientBudget`]: its event
//! budget and, apart, its `ai:ack` budget, because acks arrive every 32
//! tokens or 100 ms per live stream and are cumulative (a dropped one is
//! made good by the next), while other events come a few a second at
//! most. A refusal is [`GatewayError::RateLimited`] with the wait until
//! the next request would pass; a client budget says whether it is the
//! first refusal of a run (to be answered) or one more (to be dropped
//! quietly), so a flood is answered once, not once per event. Every
//! refusal is counted in [`Refusals`]. Keyed state is bounded by a sweep
//! every minute ([`RateLimits::sweep`]) that forgets keys whose bucket is
//! full again.

use crate::config::RateLimitConfig;
use crate::error::{GatewayError, RateLimit};
use crate::telemetry::{Refusals, Stats};
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

/// Who a per-user stream budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamKey {
    /// The JWT `sub` (auth on).
    User(Arc<str>),
    /// The client address (auth off: there are no users).
    Address(IpAddr),
    /// The client itself (auth off and no address known).
    Client(Arc<str>),
}

/// The limiters shared by all connections.
pub struct RateLimits {
    sessions: Option<DefaultKeyedRateLimiter<IpAddr>>,
    joins: Option<DefaultKeyedRateLimiter<IpAddr>>,
    streams: Option<DefaultKeyedRateLimiter<StreamKey>>,
    config: RateLimitConfig,
    stats: Arc<Stats>,
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig, stats: Arc<Stats>) -> Self {
        let per_address = || {
            quota(config.connections_per_minute, config.connections_burst)
                .map(DefaultKeyedRateLimiter::keyed)
        };
        Self {
            sessions: per_address(),
            joins: per_address(),
            streams: quota(config.streams_per_minute, config.streams_burst)
                .map(DefaultKeyedRateLimiter::keyed),
            config: config.clone(),
            stats,
        }
    }

    /// A new Engine.IO session from `ip` (the connection gate counts its
    /// refusals with the connection caps').
    pub fn new_session(&self, ip: IpAddr) -> Result<(), GatewayError> {
        check_key(&self.sessions, &ip, RateLimit::Connections)
    }

    /// A new `/ai` join from `ip`.
    pub fn connection(&self, ip: IpAddr) -> Result<(), GatewayError> {
        check_key(&self.joins, &ip, RateLimit::Connections)
            .inspect_err(|_| count(&self.stats.refused.joins))
    }

    /// A stream started by `key`.
    pub fn stream_start(&self, key: &StreamKey) -> Result<(), GatewayError> {
        let limit = match key {
            StreamKey::Address(_) => RateLimit::StreamsFromAddress,
            _ => RateLimit::Streams,
        };
        check_key(&self.streams, key, limit).inspect_err(|_| count(&self.stats.refused.streams))
    }

    /// A fresh per-client budget.
    pub fn budget(&self) -> ClientBudget {
        let c = &self.config;
        ClientBudget {
            events: quota(c.events_per_minute, c.events_burst)
                .map(DefaultDirectRateLimiter::direct),
            acks: quota(c.acks_per_minute, c.acks_burst).map(DefaultDirectRateLimiter::direct),
            events_refused: AtomicBool::new(false),
            acks_refused: AtomicBool::new(false),
            stats: self.stats.clone(),
        }
    }

    /// Forget keys whose bucket has refilled, so that memory follows the
    /// number of recently active addresses and users, not all ever seen.
    pub fn sweep(&self) {
        for l in self.sessions.iter().chain(self.joins.iter()) {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in self.streams.iter() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Keys (addresses and users) the limiters hold state for now, until
    /// the next sweep forgets the idle ones (for `/stats`).
    pub fn tracked_keys(&self) -> usize {
        let keyed = self
            .sessions
            .iter()
            .chain(self.joins.iter())
            .map(|l| l.len());
        keyed.chain(self.streams.iter().map(|l| l.len())).sum()
    }

    /// How often [`RateLimits::sweep`] runs.
    pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
}

fn check_key<K: std::hash::Hash + Eq + Clone>(
    limiter: &Option<DefaultKeyedRateLimiter<K>>,
    key: &K,
    limit: RateLimit,
) -> Result<(), GatewayError> {
    match limiter {
        Some(l) => l.check_key(key).map_err(|n| refused(limit, n)),
        None => Ok(()),
    }
}

fn count(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// One client's budgets.
pub struct ClientBudget {
    events: Option<DefaultDirectRateLimiter>,
    acks: Option<DefaultDirectRateLimiter>,
    /// A refusal has been answered since the last accepted event (ack),
    /// so a flood gets one error per run of refusals, not one per event.
    events_refused: AtomicBool,
    acks_refused: AtomicBool,
    stats: Arc<Stats>,
}

/// An event over its budget.
#[derive(Debug)]
pub struct Refused {
    pub error: GatewayError,
    /// The first refusal of a run: the client is to be told. Later ones
    /// are dropped quietly (and counted as unanswered) until an event
    /// passes again.
    pub tell: bool,
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
            events_refused: AtomicBool::new(false),
            acks_refused: AtomicBool::new(false),
            stats: Arc::default(),
        }
    }

    /// Any event but `ai:ack`.
    pub fn event(&self) -> Result<(), Refused> {
        let Some(l) = &self.events else {
            return Ok(());
        };
        run_of_refusals(l, &self.events_refused, &self.stats.refused, |r| &r.events).map_err(
            |(not_until, tell)| Refused {
                error: refused(RateLimit::Events, not_until),
                tell,
            },
        )
    }

    pub fn ack(&self) -> AckVerdict {
        let Some(l) = &self.acks else {
            return AckVerdict::Apply;
        };
        match run_of_refusals(l, &self.acks_refused, &self.stats.refused, |r| &r.acks) {
            Ok(()) => AckVerdict::Apply,
            Err((n, true)) => {
                AckVerdict::RefuseAndTell(n.wait_time_from(DefaultClock::default().now()))
            }
            Err((_, false)) => AckVerdict::Refuse,
        }
    }
}

type NotUntil = governor::NotUntil<<DefaultClock as Clock>::Instant>;

/// Check `limiter`; a refusal is counted, and says whether it starts a run
/// (`true`: tell the client) or continues one (counted as unanswered).
fn run_of_refusals(
    limiter: &DefaultDirectRateLimiter,
    in_run: &AtomicBool,
    refusals: &Refusals,
    counter: fn(&Refusals) -> &std::sync::atomic::AtomicU64,
) -> Result<(), (NotUntil, bool)> {
    match limiter.check() {
        Ok(()) => {
            in_run.store(false, Relaxed);
            Ok(())
        }
        Err(n) => {
            count(counter(refusals));
            let first = !in_run.swap(true, Relaxed);
            if !first {
                count(&refusals.unanswered);
            }
            Err((n, first))
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
            ..RateLimitConfig::default()
        }
    }

    fn limits() -> RateLimits {
        RateLimits::new(&config(), Arc::default())
    }

    #[test]
    fn burst_then_refused_with_a_wait_and_told_once_per_run() {
        let limits = limits();
        let client = limits.budget();
        for _ in 0..3 {
            client.event().unwrap();
        }
        match client.event() {
            Err(Refused {
                error: GatewayError::RateLimited { retry_after, .. },
                tell: true,
            }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        let again = client.event().unwrap_err();
        assert!(!again.tell, "the second refusal of a run is quiet");
        assert_eq!(again.error.code(), "rate_limited");
        assert!(again.error.details()["retryAfterMs"].as_u64().unwrap() >= 1);
        let refused = &limits.stats.refused;
        assert_eq!(refused.events.load(Relaxed), 2);
        assert_eq!(refused.unanswered.load(Relaxed), 1);
    }

    #[test]
    fn acks_refused_once_per_run() {
        let client = limits().budget();
        assert_eq!(client.ack(), AckVerdict::Apply);
        assert_eq!(client.ack(), AckVerdict::Apply);
        assert!(matches!(client.ack(), AckVerdict::RefuseAndTell(_)));
        assert_eq!(client.ack(), AckVerdict::Refuse);
    }

    #[test]
    fn streams_are_per_user_or_address_and_zero_means_off() {
        let limits = limits();
        let (a, b) = (
            StreamKey::User("alice".into()),
            StreamKey::User("bob".into()),
        );
        limits.stream_start(&a).unwrap();
        assert!(limits.stream_start(&a).is_err());
        limits.stream_start(&b).unwrap();
        let here = StreamKey::Address("192.0.2.1".parse().unwrap());
        limits.stream_start(&here).unwrap();
        let e = limits.stream_start(&here).unwrap_err();
        assert!(e.client_message().contains("address"), "{e:?}");
        for _ in 0..100 {
            limits.connection("127.0.0.1".parse().unwrap()).unwrap();
            limits.new_session("127.0.0.1".parse().unwrap()).unwrap();
        }
        limits.sweep();
    }
}
