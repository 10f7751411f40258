//! Wire types: what each door reads from and writes to its clients.
//!
//! [`ai`] is the `/ai` Socket.IO contract, and its `StreamRequest` the
//! engine's request whichever door it came through; [`session`] the shapes
//! of a conversation the gateway keeps (stored messages, the HTTP bodies);
//! [`sse`] is `POST /api/chat/stream`, [`openai`] the OpenAI-compatible
//! `/v1` API, [`dialects`] the earlier designs' `llm:*` and `chat_*`
//! events and `POST /llm/chat`. [`validate`] turns loose JSON into typed requests and names
//! every broken field. docs/protocol.md restates the contracts. Types here
//! are plain data: they know no socket, no queue and no upstream.

pub mod agent;
pub mod ai;
pub mod dialects;
pub mod openai;
pub mod session;
pub mod sse;
pub mod validate;

pub use agent::*;
pub use ai::*;
pub use session::{SessionDetail, SessionList, SessionMessage, SessionSummary, TurnStatus};
pub use validate::{FieldError, Invalid, camel, parse_payload, serialized_size_within};

/// Milliseconds since the Unix epoch, the protocol's one clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `ms` (since the Unix epoch) as ISO 8601 in UTC with milliseconds, as
/// JavaScript's `toISOString` writes it: `2026-01-02T03:04:05.678Z`.
pub fn iso8601(ms: u64) -> String {
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000Z");
        // Date.parse("2000-02-29T23:59:59.999Z")
        assert_eq!(super::iso8601(951_868_799_999), "2000-02-29T23:59:59.999Z");
        // Date.parse("2026-12-31T12:34:56.789Z")
        assert_eq!(
            super::iso8601(1_798_720_496_789),
            "2026-12-31T12:34:56.789Z"
        );
    }
}
