//! Criterion micro-benchmarks of the per-token hot path: decoding one
//! upstream Ollama NDJSON line (the provider's `NdjsonCodec<OllamaLines>`,
//! as its framed reader calls it for each read) and encoding one `ai:token` frame the way
//! socketioxide does (`42/ai,` + `serde_json` of `["ai:token", payload]`).
//! Together they are the gateway's own work per token, apart from the
//! queue and the socket. `cargo bench --bench hot_path`.

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use streamgate::protocol::Token;
use streamgate::upstream::OllamaLines;
use streamgate::upstream::ndjson::NdjsonCodec;
use tokio_util::codec::Decoder;

/// Feed one read and decode every chunk in it.
fn decode_read(codec: &mut NdjsonCodec<OllamaLines>, read: &[u8]) -> usize {
    let mut buf = BytesMut::from(read);
    let mut n = 0;
    while let Ok(Some(chunk)) = codec.decode(&mut buf) {
        black_box(chunk);
        n += 1;
    }
    n
}

const LINE: &[u8] = b"{\"model\":\"llama3.2\",\"created_at\":\"2024-01-01T00:00:00.000000Z\",\"message\":{\"role\":\"assistant\",\"content\":\" token\"},\"done\":false}\n";

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_upstream_line");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_line_per_read", |b| {
        let mut codec = NdjsonCodec::new(OllamaLines::default());
        b.iter(|| black_box(decode_read(&mut codec, black_box(LINE))));
    });
    // A fast upstream delivers many lines per read.
    let batch: Vec<u8> = LINE.repeat(64);
    g.throughput(Throughput::Elements(64));
    g.bench_function("64_lines_per_read", |b| {
        let mut codec = NdjsonCodec::new(OllamaLines::default());
        b.iter(|| black_box(decode_read(&mut codec, black_box(&batch))));
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_token_frame");
    g.throughput(Throughput::Elements(1));
    let stream_id: Arc<str> = "s_0123456789abcdef".into();
    g.bench_function("serde_json_42_frame", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let token = Token {
                stream_id: stream_id.clone(),
                data: " token".to_string(),
                token_count: n,
                agent: None,
                metadata: None,
            };
            let mut frame = Vec::with_capacity(96);
            frame.extend_from_slice(b"42/ai,");
            let r = serde_json::to_writer(&mut frame, &("ai:token", &token));
            black_box((r.is_ok(), frame))
        });
    });
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
