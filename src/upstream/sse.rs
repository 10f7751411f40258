//! Server-sent-event bodies into [`Chunk`]s, for the providers that speak
//! SSE (`openai`, `anthropic`).
//!
//! Bytes go through `eventsource-stream` (which keeps partial lines and
//! partial UTF-8 sequences between reads and follows the SSE spec for
//! fields, comments and line endings); each complete event goes to the wire
//! format's [`EventDecoder`], which turns it into tokens and, at the end,
//! one [`Chunk::Done`]. The pipeline is generic over the byte stream so the
//! fixture tests run exactly the code the providers run, fed split at every
//! byte boundary. Reading stops at `Done`: what follows is never read, and
//! dropping the stream drops the body, closing the connection. A connection
//! that breaks before the first token is "unavailable" (the next provider
//! of the chain may serve); after it, the stream has failed.

use super::provider::{Chunk, ChunkStream};
use crate::error::ProviderError;
use bytes::Bytes;
use eventsource_stream::{Event, EventStream};
use futures_util::{Stream, StreamExt};
use std::collections::VecDeque;
use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Why a wire format rejected an event.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// The upstream says "not now" (e.g. Anthropic's `overloaded_error`):
    /// before the first token the next provider may serve.
    Unavailable(String),
    /// A broken or failed stream.
    Upstream(String),
}

impl DecodeError {
    fn into_provider_error(self, provider: &str) -> ProviderError {
        let provider = provider.to_string();
        match self {
            DecodeError::Unavailable(detail) => ProviderError::Unavailable { provider, detail },
            DecodeError::Upstream(detail) => ProviderError::Upstream { provider, detail },
        }
    }
}

/// One wire format's reading of SSE events.
pub trait EventDecoder: Send + 'static {
    /// Decode one event, pushing any chunks it carries onto `out`.
    fn event(&mut self, event: &Event, out: &mut VecDeque<Chunk>) -> Result<(), DecodeError>;
    /// The body ended before a [`Chunk::Done`]: push one if the format
    /// allows ending here, or say why not.
    fn end(&mut self, out: &mut VecDeque<Chunk>) -> Result<(), DecodeError>;
}

/// More than this many bytes without a complete event is a broken upstream
/// (the SSE parser would otherwise buffer an endless line).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Debug)]
enum BodyError {
    Transport(String),
    EventTooLong,
}

impl Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Transport(e) => write!(f, "{e}"),
            BodyError::EventTooLong => {
                write!(f, "no complete event within {MAX_EVENT_BYTES} bytes")
            }
        }
    }
}

/// Decode an SSE `body` with `decoder` into a [`ChunkStream`] whose errors
/// name `provider`.
pub fn sse_chunks<S, E, D>(provider: Arc<str>, body: S, decoder: D) -> ChunkStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Display,
    D: EventDecoder,
{
    let pending = Arc::new(AtomicUsize::new(0));
    let counter = pending.clone();
    let counted = body.map(move |read| match read {
        Ok(bytes) => {
            let held = counter.fetch_add(bytes.len(), Relaxed) + bytes.len();
            if held > MAX_EVENT_BYTES {
                Err(BodyError::EventTooLong)
            } else {
                Ok(bytes)
            }
        }
        Err(e) => Err(BodyError::Transport(e.to_string())),
    });
    struct St<D> {
        events: futures_util::stream::BoxStream<
            'static,
            Result<Event, eventsource_stream::EventStreamError<BodyError>>,
        >,
        decoder: D,
        ready: VecDeque<Chunk>,
        pending: Arc<AtomicUsize>,
        ended: bool,
        /// Whether a token went out: a broken connection before that is
        /// "unavailable" (the next provider may serve), after it a failure.
        any_token: bool,
        provider: Arc<str>,
    }
    let st = St {
        events: EventStream::new(counted).boxed(),
        decoder,
        ready: VecDeque::new(),
        pending,
        ended: false,
        any_token: false,
        provider,
    };
    futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(chunk) = st.ready.pop_front() {
                match chunk {
                    Chunk::Done { .. } => {
                        st.ended = true;
                        st.ready.clear();
                    }
                    _ => st.any_token = true,
                }
                return Some((Ok(chunk), st));
            }
            if st.ended {
                return None;
            }
            let result = match st.events.next().await {
                Some(Ok(event)) => {
                    st.pending.store(0, Relaxed);
                    st.decoder.event(&event, &mut st.ready)
                }
                Some(Err(eventsource_stream::EventStreamError::Transport(
                    BodyError::Transport(e),
                ))) if !st.any_token => Err(DecodeError::Unavailable(format!("body: {e}"))),
                Some(Err(e)) => Err(DecodeError::Upstream(format!("body: {e}"))),
                None => {
                    st.ended = true;
                    st.decoder.end(&mut st.ready)
                }
            };
            if let Err(e) = result {
                st.ended = true;
                st.ready.clear();
                return Some((Err(e.into_provider_error(&st.provider)), st));
            }
        }
    })
    .boxed()
}

/// Test support: run `decoder` over `body` delivered as the given pieces,
/// collecting every item (used by each format's split-point tests).
#[cfg(test)]
pub async fn decode_pieces<D: EventDecoder>(
    pieces: Vec<&[u8]>,
    decoder: D,
) -> Vec<Result<Chunk, String>> {
    let reads: Vec<Result<Bytes, std::io::Error>> = pieces
        .into_iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    sse_chunks("test".into(), futures_util::stream::iter(reads), decoder)
        .map(|item| item.map_err(|e| e.to_string()))
        .collect()
        .await
}
