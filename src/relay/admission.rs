//! What a stream holds while it runs, and the caps on it: its entry in the
//! client's stream table, a slot of the process's live streams, and a slot
//! of the provider that serves it.
//!
//! [`Reservation`] is taken first, in the order a client should hear about
//! refusals: the client's own table (`too_many_streams`, duplicate id),
//! then the process's slots (`too_many_streams`, scope `gateway`), then
//! room on some provider of the route (scope `provider`). Whatever refuses
//! later (the replay memory, the per-user budget) drops the reservation,
//! which gives everything back, so a refused request spends nothing.
//! [`StreamSlot`] (process) and [`ProviderSlot`] are counters held by
//! guards: a slot is released when its guard drops, or earlier with
//! `release`, which the stream task does before it queues its terminal
//! events, so that a client that hears a stream ended may start the next.
//! Nothing here spawns, queues an event or talks to an upstream.

use crate::clients::{Client, StreamControl};
use crate::error::GatewayError;
use crate::upstream::Provider;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The process's live streams and its cap (0: none).
pub struct StreamSlots {
    live: Arc<AtomicUsize>,
    max: usize,
}

/// One live stream's place in the process's count.
pub struct StreamSlot {
    live: Option<Arc<AtomicUsize>>,
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self {
            live: Arc::default(),
            max,
        }
    }

    /// A slot, or `too_many_streams` (scope `gateway`) at the cap.
    pub fn take(&self) -> Result<StreamSlot, GatewayError> {
        let max = self.max;
        self.live
            .fetch_update(Relaxed, Relaxed, |n| (max == 0 || n < max).then_some(n + 1))
            .map_err(|_| GatewayError::StreamCapacity {
                provider: None,
                limit: max,
            })?;
        Ok(StreamSlot {
            live: Some(self.live.clone()),
        })
    }

    pub fn live(&self) -> usize {
        self.live.load(Relaxed)
    }
}

impl StreamSlot {
    /// Give the slot back now (it is given back on drop otherwise).
    pub fn release(&mut self) {
        if let Some(live) = self.live.take() {
            live.fetch_sub(1, Relaxed);
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.release();
    }
}

/// A stream's place among a provider's live streams.
pub struct ProviderSlot {
    live: Option<Arc<crate::telemetry::ProviderStats>>,
}

impl ProviderSlot {
    /// A slot on `provider`, if it is under its `max_streams`.
    pub fn take(provider: &dyn Provider) -> Option<Self> {
        let (stats, max) = (provider.stats(), provider.max_streams() as u64);
        stats
            .live_streams
            .fetch_update(Relaxed, Relaxed, |n| (max == 0 || n < max).then_some(n + 1))
            .ok()?;
        Some(Self {
            live: Some(stats.clone()),
        })
    }

    pub fn release(&mut self) {
        if let Some(stats) = self.live.take() {
            stats.live_streams.fetch_sub(1, Relaxed);
        }
    }
}

impl Drop for ProviderSlot {
    fn drop(&mut self) {
        self.release();
    }
}

/// Could `provider` take one more stream now?
pub fn has_room(provider: &dyn Provider) -> bool {
    let max = provider.max_streams() as u64;
    max == 0 || provider.stats().live_streams.load(Relaxed) < max
}

/// A stream admitted so far: its table entry and its process slot, both
/// given back on drop unless [`Reservation::keep`] hands them on.
pub struct Reservation {
    client: Arc<Client>,
    id: Arc<str>,
    control: Arc<StreamControl>,
    slot: StreamSlot,
    kept: bool,
}

impl Reservation {
    /// Reserve `id` on `client` (at most `per_client` live), a process
    /// slot, and check that some provider of `chain` has room.
    pub fn take(
        client: &Arc<Client>,
        id: Arc<str>,
        per_client: usize,
        slots: &StreamSlots,
        chain: &[Arc<dyn Provider>],
    ) -> Result<Self, GatewayError> {
        let control = client.add_stream(id.clone(), per_client)?;
        let slot = match slots.take() {
            Ok(slot) => slot,
            Err(e) => {
                client.remove_stream(&id);
                return Err(e);
            }
        };
        let reservation = Self {
            client: client.clone(),
            id,
            control,
            slot,
            kept: false,
        };
        if !chain.iter().any(|p| has_room(p.as_ref()))
            && let Some(full) = chain.first()
        {
            return Err(GatewayError::StreamCapacity {
                provider: Some(full.name().to_string()),
                limit: full.max_streams(),
            });
        }
        Ok(reservation)
    }

    /// The stream runs: hand over its control and slot.
    pub fn keep(mut self) -> (Arc<StreamControl>, StreamSlot) {
        self.kept = true;
        let slot = std::mem::replace(&mut self.slot, StreamSlot { live: None });
        (self.control.clone(), slot)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            self.client.remove_stream(&self.id);
        }
    }
}
