//! Ollama's streaming chat API: `POST /api/chat` answering NDJSON.
//!
//! Each line is one JSON object: `{"message":{"content":"…"},"done":false}`
//! for a token, a last line with `"done":true`, `done_reason`,
//! `prompt_eval_count` and `eval_count`, or `{"error":"…"}`. Lines arrive
//! split across TCP reads or several to a read; [`OllamaLineDecoder`] keeps
//! the partial line between reads and parses each complete line once.

use super::{Chunk, ChunkStream, Provider, ProviderId, UpstreamRequest};
use crate::config::ProviderConfig;
use crate::error::ProviderError;
use crate::protocol::{ChatMessage, Usage};
use crate::telemetry::ProviderStats;
use bytes::BytesMut;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

pub struct OllamaProvider {
    id: ProviderId,
    chat_url: String,
    tags_url: String,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    #[serde(skip_serializing_if = "Options::is_empty")]
    options: Options,
}

#[derive(Serialize, Default)]
struct Options {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
}

impl Options {
    fn is_empty(&self) -> bool {
        self.temperature.is_none() && self.num_predict.is_none()
    }
}

impl OllamaProvider {
    pub fn new(
        name: &str,
        config: &ProviderConfig,
        stats: Arc<ProviderStats>,
    ) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ProviderError::Unavailable {
                provider: name.to_string(),
                detail: e.to_string(),
            })?;
        let base = config.base_url.trim_end_matches('/');
        Ok(Self {
            id: ProviderId::new(name, config, stats),
            chat_url: format!("{base}/api/chat"),
            tags_url: format!("{base}/api/tags"),
            client,
        })
    }
}

impl Provider for OllamaProvider {
    fn id(&self) -> &ProviderId {
        &self.id
    }

    fn open(
        &self,
        request: UpstreamRequest,
    ) -> BoxFuture<'static, Result<ChunkStream, ProviderError>> {
        let body = ChatBody {
            model: &request.model,
            messages: &request.messages,
            stream: true,
            options: Options {
                temperature: request.temperature,
                num_predict: request.max_tokens,
            },
        };
        let send = self.client.post(&self.chat_url).json(&body).send();
        let name = self.id.name.clone();
        Box::pin(async move {
            let unavailable = |detail: String| ProviderError::Unavailable {
                provider: name.to_string(),
                detail,
            };
            let response = send.await.map_err(|e| unavailable(e.to_string()))?;
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 429 {
                return Err(unavailable(format!("HTTP {status}")));
            }
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                let detail = serde_json::from_str::<ErrorLine>(&text)
                    .map(|e| e.error)
                    .unwrap_or(text);
                return Err(ProviderError::Upstream {
                    provider: name.to_string(),
                    detail: format!("HTTP {status}: {detail}"),
                });
            }
            Ok(ndjson_chunks(name, response))
        })
    }

    fn probe(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        let req = self
            .client
            .get(&self.tags_url)
            .timeout(Duration::from_secs(2))
            .send();
        let name = self.id.name.clone();
        Box::pin(async move {
            match req.await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(ProviderError::Unavailable {
                    provider: name.to_string(),
                    detail: format!("HTTP {}", r.status()),
                }),
                Err(e) => Err(ProviderError::Unavailable {
                    provider: name.to_string(),
                    detail: e.to_string(),
                }),
            }
        })
    }
}

/// The body as chunks: read bytes, decode lines, stop after `done`.
fn ndjson_chunks(name: Arc<str>, response: reqwest::Response) -> ChunkStream {
    struct St {
        body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
        decoder: OllamaLineDecoder,
        ready: VecDeque<Chunk>,
        finished: bool,
        name: Arc<str>,
    }
    let st = St {
        body: response.bytes_stream().boxed(),
        decoder: OllamaLineDecoder::default(),
        ready: VecDeque::new(),
        finished: false,
        name,
    };
    futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(chunk) = st.ready.pop_front() {
                if matches!(chunk, Chunk::Done { .. }) {
                    st.finished = true;
                    st.ready.clear();
                }
                return Some((Ok(chunk), st));
            }
            if st.finished {
                return None;
            }
            let upstream = |detail: String| ProviderError::Upstream {
                provider: st.name.to_string(),
                detail,
            };
            match st.body.next().await {
                Some(Ok(bytes)) => {
                    if let Err(detail) = st.decoder.feed(&bytes, &mut st.ready) {
                        st.finished = true;
                        return Some((Err(upstream(detail)), st));
                    }
                }
                Some(Err(e)) => {
                    st.finished = true;
                    return Some((Err(upstream(format!("body: {e}"))), st));
                }
                None => {
                    st.finished = true;
                    let detail = "stream ended before its done line".to_string();
                    return Some((Err(upstream(detail)), st));
                }
            }
        }
    })
    .boxed()
}

#[derive(Deserialize)]
struct ErrorLine {
    error: String,
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: String,
}

/// Splits an NDJSON byte stream into lines and decodes them. Holds at most
/// one partial line between reads, capped so a line with no end cannot grow
/// memory without bound.
#[derive(Default)]
pub struct OllamaLineDecoder {
    partial: BytesMut,
}

/// A single NDJSON line longer than this is a broken upstream.
const MAX_LINE_BYTES: usize = 1 << 20;

impl OllamaLineDecoder {
    /// Feed one read's bytes; complete lines become chunks in `out`. An
    /// `{"error":…}` line or an undecodable line is an `Err` with a detail
    /// for the logs.
    pub fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<Chunk>) -> Result<(), String> {
        self.partial.extend_from_slice(bytes);
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line = self.partial.split_to(pos + 1);
            let line = trim_line(&line);
            if line.is_empty() {
                continue;
            }
            decode_line(line, out)?;
        }
        if self.partial.len() > MAX_LINE_BYTES {
            self.partial.clear();
            return Err(format!("a line exceeded {MAX_LINE_BYTES} bytes"));
        }
        if self.partial.is_empty() && self.partial.capacity() > 64 * 1024 {
            // One huge line is no reason to hold its buffer for the stream's life.
            self.partial = BytesMut::new();
        }
        Ok(())
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\n' | b'\r' | b' '] = l {
        l = rest;
    }
    l
}

/// Decode one NDJSON line into `out` (token lines with empty content carry
/// nothing and add nothing).
pub fn decode_line(line: &[u8], out: &mut VecDeque<Chunk>) -> Result<(), String> {
    let parsed: Line =
        serde_json::from_slice(line).map_err(|e| format!("undecodable line: {e}"))?;
    if let Some(error) = parsed.error {
        return Err(format!("error line: {error}"));
    }
    if let Some(m) = parsed.message
        && !m.content.is_empty()
    {
        out.push_back(Chunk::Token(m.content));
    }
    if parsed.done {
        let usage =
            (parsed.prompt_eval_count.is_some() || parsed.eval_count.is_some()).then_some(Usage {
                prompt_tokens: parsed.prompt_eval_count,
                completion_tokens: parsed.eval_count,
            });
        out.push_back(Chunk::Done {
            finish_reason: parsed.done_reason.unwrap_or_else(|| "stop".into()),
            usage,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = concat!(
        "{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n",
        "{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"lo \\u00e9\\n\"},\"done\":false}\n",
        "{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"total_duration\":1,\"prompt_eval_count\":7,\"eval_count\":2}\n",
    );

    fn decode_split_at(cut: usize) -> Vec<Chunk> {
        let mut d = OllamaLineDecoder::default();
        let mut out = VecDeque::new();
        d.feed(&BODY.as_bytes()[..cut], &mut out).unwrap();
        d.feed(&BODY.as_bytes()[cut..], &mut out).unwrap();
        out.into_iter().collect()
    }

    #[test]
    fn every_split_point_decodes_the_same() {
        let want = vec![
            Chunk::Token("Hel".into()),
            Chunk::Token("lo é\n".into()),
            Chunk::Done {
                finish_reason: "length".into(),
                usage: Some(Usage {
                    prompt_tokens: Some(7),
                    completion_tokens: Some(2),
                }),
            },
        ];
        for cut in 0..=BODY.len() {
            assert_eq!(decode_split_at(cut), want, "split at byte {cut}");
        }
    }

    #[test]
    fn error_line_is_an_error() {
        let mut d = OllamaLineDecoder::default();
        let mut out = VecDeque::new();
        let e = d
            .feed(b"{\"error\":\"model 'x' not found\"}\n", &mut out)
            .unwrap_err();
        assert!(e.contains("not found"));
    }

    #[test]
    fn endless_line_is_capped() {
        let mut d = OllamaLineDecoder::default();
        let mut out = VecDeque::new();
        let big = vec![b'a'; MAX_LINE_BYTES + 1];
        assert!(d.feed(&big, &mut out).is_err());
        assert!(d.partial.is_empty());
    }
}
