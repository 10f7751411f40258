//! Newline-delimited JSON bodies into [`Chunk`]s, for the providers that
//! stream one JSON object per line (`ollama`).
//!
//! Bytes are framed into lines by tokio-util's `LinesCodec` (capped, so a
//! line with no end cannot grow memory without bound); each line goes to
//! the wire format's [`LineDecoder`]. The pipeline is generic over the byte
//! stream, so the fixture tests run exactly the code the provider runs, fed
//! split at every byte boundary. Reading stops at `Done`: what follows is
//! never read, and dropping the stream drops the body, closing the
//! connection. Nothing is read ahead of the consumer.

use super::provider::{Chunk, ChunkStream};
use crate::error::ProviderError;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio_util::codec::{Decoder, FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

/// A single line longer than this is a broken upstream.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One wire format's reading of a line.
pub trait LineDecoder: Send + 'static {
    /// Decode one non-empty line, pushing the chunks it carries onto
    /// `out`; an `Err` is a detail for the logs.
    fn line(&mut self, line: &str, out: &mut VecDeque<Chunk>) -> Result<(), String>;
}

/// Why a body could not be read as lines.
#[derive(Debug, thiserror::Error)]
pub enum NdjsonError {
    #[error("body: {0}")]
    Io(#[from] std::io::Error),
    #[error("a line exceeded {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    #[error("{0}")]
    Line(String),
}

impl From<LinesCodecError> for NdjsonError {
    fn from(e: LinesCodecError) -> Self {
        match e {
            LinesCodecError::MaxLineLengthExceeded => Self::LineTooLong,
            LinesCodecError::Io(e) => Self::Io(e),
        }
    }
}

/// `LinesCodec` plus a [`LineDecoder`]: bytes in, chunks out.
pub struct NdjsonCodec<D> {
    lines: LinesCodec,
    decoder: D,
    ready: VecDeque<Chunk>,
}

impl<D: LineDecoder> NdjsonCodec<D> {
    pub fn new(decoder: D) -> Self {
        Self {
            lines: LinesCodec::new_with_max_length(MAX_LINE_BYTES),
            decoder,
            ready: VecDeque::with_capacity(2),
        }
    }

    fn feed(&mut self, line: Option<String>) -> Result<(), NdjsonError> {
        if let Some(line) = line.as_deref().map(str::trim)
            && !line.is_empty()
        {
            self.decoder
                .line(line, &mut self.ready)
                .map_err(NdjsonError::Line)?;
        }
        Ok(())
    }
}

impl<D: LineDecoder> Decoder for NdjsonCodec<D> {
    type Item = Chunk;
    type Error = NdjsonError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, NdjsonError> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Ok(Some(chunk));
            }
            match self.lines.decode(buf)? {
                Some(line) => self.feed(Some(line))?,
                None => return Ok(None),
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, NdjsonError> {
        if let Some(chunk) = self.decode(buf)? {
            return Ok(Some(chunk));
        }
        let last = self.lines.decode_eof(buf)?;
        self.feed(last)?;
        Ok(self.ready.pop_front())
    }
}

/// Decode an NDJSON `body` with `decoder` into a [`ChunkStream`] whose
/// errors name `provider`. A body that ends before a `Done` is broken.
pub fn ndjson_chunks<S, E, D>(provider: Arc<str>, body: S, decoder: D) -> ChunkStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
    D: LineDecoder,
{
    let body = body
        .map_err(|e| std::io::Error::other(e.to_string()))
        .boxed();
    let reader = StreamReader::new(body);
    let frames = FramedRead::new(reader, NdjsonCodec::new(decoder));
    let upstream = move |detail: String| ProviderError::Upstream {
        provider: provider.to_string(),
        detail,
    };
    futures_util::stream::unfold(Some((frames, upstream)), |state| async move {
        let (mut frames, upstream) = state?;
        match frames.next().await {
            Some(Ok(chunk @ Chunk::Done { .. })) => Some((Ok(chunk), None)),
            Some(Ok(chunk)) => Some((Ok(chunk), Some((frames, upstream)))),
            Some(Err(e)) => Some((Err(upstream(e.to_string())), None)),
            None => {
                let e = upstream("stream ended before its done line".into());
                Some((Err(e), None))
            }
        }
    })
    .boxed()
}

/// Test support: run `decoder` over a body delivered as the given pieces,
/// collecting every item.
#[cfg(test)]
pub async fn decode_pieces<D: LineDecoder>(
    pieces: Vec<&[u8]>,
    decoder: D,
) -> Vec<Result<Chunk, String>> {
    let reads: Vec<Result<Bytes, std::io::Error>> = pieces
        .into_iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    ndjson_chunks("test".into(), futures_util::stream::iter(reads), decoder)
        .map(|item| item.map_err(|e| e.to_string()))
        .collect()
        .await
}
