//! Live connections (Engine.IO sessions: a WebSocket, or a long-polling
//! session) per client address and in the process, with their caps.
//!
//! A door admits a new connection with [`Connections::admit`], which
//! refuses it when its address or the process already holds the maximum,
//! and otherwise hands out a [`ConnectionTicket`]: the connection counts
//! for as long as a clone of its ticket lives, and dropping the last one
//! gives the place back. The HTTP layer (`http::gate`) puts the ticket
//! into the handshake request's extensions, which Engine.IO keeps with the
//! session's socket for the session's whole life, so the count follows
//! what the sessions really hold, however they end (a WebSocket closing,
//! a polling session timing out, a session that never joined `/ai`). This
//! module knows no transport and no door; it only counts.

use crate::config::RateLimitConfig;
use crate::error::{Capacity, GatewayError};
use crate::telemetry::Stats;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The live connections of every address, and the caps.
pub struct Connections {
    table: Arc<Table>,
}

struct Table {
    per_address: DashMap<IpAddr, usize>,
    total: AtomicUsize,
    max_per_address: usize,
    max_total: usize,
    stats: Arc<Stats>,
}

/// One admitted connection; it counts until the last clone is dropped.
pub struct ConnectionTicket {
    address: IpAddr,
    table: Arc<Table>,
}

impl Connections {
    pub fn new(limits: &RateLimitConfig, stats: Arc<Stats>) -> Self {
        Self {
            table: Arc::new(Table {
                per_address: DashMap::new(),
                total: AtomicUsize::new(0),
                max_per_address: limits.max_connections_per_address,
                max_total: limits.max_connections,
                stats,
            }),
        }
    }

    /// A new connection from `address`, or the cap it would pass.
    pub fn admit(&self, address: IpAddr) -> Result<Arc<ConnectionTicket>, GatewayError> {
        let t = &self.table;
        let taken = t.total.fetch_update(Relaxed, Relaxed, |n| {
            (t.max_total == 0 || n < t.max_total).then_some(n + 1)
        });
        if taken.is_err() {
            return Err(busy(Capacity::Connections, t.max_total));
        }
        let mut entry = t.per_address.entry(address).or_insert(0);
        if t.max_per_address != 0 && *entry >= t.max_per_address {
            drop(entry);
            t.total.fetch_sub(1, Relaxed);
            return Err(busy(Capacity::ConnectionsPerAddress, t.max_per_address));
        }
        if *entry == 0 {
            t.stats.connection_addresses.fetch_add(1, Relaxed);
        }
        *entry += 1;
        drop(entry);
        t.stats.connections_live.fetch_add(1, Relaxed);
        t.stats.connections_opened.fetch_add(1, Relaxed);
        Ok(Arc::new(ConnectionTicket {
            address,
            table: t.clone(),
        }))
    }

    /// The most connections one address holds now (for `/stats`).
    pub fn largest_per_address(&self) -> usize {
        self.table
            .per_address
            .iter()
            .map(|e| *e.value())
            .max()
            .unwrap_or(0)
    }
}

fn busy(limit: Capacity, max: usize) -> GatewayError {
    GatewayError::ServerBusy { limit, max }
}

impl ConnectionTicket {
    pub fn address(&self) -> IpAddr {
        self.address
    }
}

impl Drop for ConnectionTicket {
    fn drop(&mut self) {
        let t = &self.table;
        let gone = t
            .per_address
            .remove_if_mut(&self.address, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            })
            .is_some();
        if gone {
            t.stats.connection_addresses.fetch_sub(1, Relaxed);
        }
        t.total.fetch_sub(1, Relaxed);
        t.stats.connections_live.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_address: usize, total: usize) -> RateLimitConfig {
        RateLimitConfig {
            max_connections_per_address: per_address,
            max_connections: total,
            ..RateLimitConfig::default()
        }
    }

    #[test]
    fn caps_per_address_and_in_all_and_gives_back_on_drop() {
        let stats = Arc::new(Stats::default());
        let c = Connections::new(&limits(2, 3), stats.clone());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = c.admit(a).unwrap();
        let a2 = a1.clone();
        let _a3 = c.admit(a).unwrap();
        assert!(matches!(
            c.admit(a),
            Err(GatewayError::ServerBusy {
                limit: Capacity::ConnectionsPerAddress,
                max: 2
            })
        ));
        let _b1 = c.admit(b).unwrap();
        assert!(matches!(
            c.admit(b),
            Err(GatewayError::ServerBusy {
                limit: Capacity::Connections,
                max: 3
            })
        ));
        assert_eq!(c.largest_per_address(), 2);
        drop(a1);
        assert_eq!(
            stats.connections_live.load(Relaxed),
            3,
            "a clone still holds it"
        );
        drop(a2);
        assert_eq!(stats.connections_live.load(Relaxed), 2);
        c.admit(b).unwrap();
        assert_eq!(stats.connection_addresses.load(Relaxed), 2);
    }
}
