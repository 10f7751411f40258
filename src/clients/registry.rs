//! Every client the gateway holds, by client id, and the gauges of how
//! many are attached and detached.
//!
//! The registry is the one place that moves those gauges, at the one place
//! each transition happens: a client registered (attached), detached,
//! resumed (attached again, the connection that resumed it forgotten),
//! expired or removed. Who is attached to what is the [`Client`]'s own
//! business; the registry only finds clients.

use super::client::Client;
use crate::telemetry::Stats;
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

pub struct ClientRegistry {
    clients: DashMap<Arc<str>, Arc<Client>>,
    stats: Arc<Stats>,
}

/// Why a resume was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefused {
    /// No such client, or its window ran out.
    Unknown,
    /// Wrong or spent resume token, another user's client, or a connection
    /// that already runs streams of its own.
    Forbidden,
}

impl ResumeRefused {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Forbidden => "forbidden",
        }
    }
}

impl ClientRegistry {
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            clients: DashMap::new(),
            stats,
        }
    }

    /// A new, attached client.
    pub fn insert(&self, client: Arc<Client>) {
        self.clients.insert(client.id(), client);
        self.stats.clients_connected.fetch_add(1, Relaxed);
        self.stats.clients_total.fetch_add(1, Relaxed);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.clients.get(id).map(|c| c.clone())
    }

    /// A registered client lost its writer.
    pub fn detached(&self) {
        self.stats.clients_connected.fetch_sub(1, Relaxed);
        self.stats.clients_detached.fetch_add(1, Relaxed);
    }

    /// The reconnect window of a detachment ran out: forget the client if
    /// it is still detached since `epoch`. True when it was forgotten (the
    /// caller then cancels it).
    pub fn expire(&self, client: &Arc<Client>, epoch: u64) -> bool {
        if !client.detached_since(epoch) {
            return false;
        }
        let gone = self
            .clients
            .remove_if(&client.id(), |_, c| Arc::ptr_eq(c, client))
            .is_some();
        if gone {
            self.stats.clients_detached.fetch_sub(1, Relaxed);
        }
        gone
    }

    /// Let `fresh` (a connection's own new client) become `previous_id`,
    /// if `token` is its resume token and both have the same owner.
    /// Another user's client is refused exactly like a wrong token. On
    /// success the previous client answers to `fresh`'s id with a new
    /// resume token, and `fresh` is forgotten.
    pub fn resume(
        &self,
        previous_id: &str,
        token: &str,
        fresh: &Arc<Client>,
    ) -> Result<Arc<Client>, ResumeRefused> {
        let previous = self.get(previous_id).ok_or(ResumeRefused::Unknown)?;
        if Arc::ptr_eq(&previous, fresh) || previous.owner != fresh.owner {
            return Err(ResumeRefused::Forbidden);
        }
        let new_id = fresh.id();
        let old_id = previous
            .rename_if_token(token, new_id.clone())
            .ok_or(ResumeRefused::Forbidden)?;
        let was_attached = previous.is_attached();
        self.clients.remove(&old_id);
        // `fresh` counted as connected; now `previous` stands in its place.
        self.clients.insert(new_id, previous.clone());
        if was_attached {
            // A second tab: it is about to be told and closed.
            self.stats.clients_connected.fetch_sub(1, Relaxed);
        } else {
            self.stats.clients_detached.fetch_sub(1, Relaxed);
        }
        Ok(previous)
    }

    /// Forget `client` at once, wherever it stands (shutdown).
    pub fn remove(&self, client: &Arc<Client>) {
        let gone = self
            .clients
            .remove_if(&client.id(), |_, c| Arc::ptr_eq(c, client))
            .is_some();
        if gone {
            let gauge = if client.is_attached() {
                &self.stats.clients_connected
            } else {
                &self.stats.clients_detached
            };
            gauge.fetch_sub(1, Relaxed);
        }
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Every client now (for shutdown and `/stats`).
    pub fn all(&self) -> Vec<Arc<Client>> {
        self.clients.iter().map(|e| e.value().clone()).collect()
    }
}
