//! Credit flow control: how far ahead of the client's `ai:ack`s the
//! writer may run.
//!
//! Every piece of credit arithmetic lives here, so that there is one place
//! to read when asking "why is this client held back?". Each stream keeps
//! two marks ([`StreamCredits`]): the last position handed to a writer and
//! the last one the client acknowledged. The client as a whole
//! ([`Credits`]) counts the pieces handed out and not yet acknowledged, and
//! holds deltas back once that reaches the window, but only after the
//! client has shown it acks at all (a client that never acks is judged by
//! its transport alone). An ended stream's outstanding pieces are
//! forgotten with it, and a stream id used again starts from zero.

use super::event::StreamEvent;

/// One stream's marks.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamCredits {
    /// Last position handed to a writer.
    emitted: u64,
    /// Last position the client acknowledged.
    acked: u64,
}

impl StreamCredits {
    fn outstanding(&self) -> u64 {
        self.emitted.saturating_sub(self.acked)
    }
}

/// The client's credit window.
#[derive(Debug)]
pub struct Credits {
    window: u64,
    /// Pieces handed out and not yet acknowledged, over all streams.
    unacked: u64,
    /// The client has sent `ai:ack` at least once.
    aware: bool,
}

impl Credits {
    pub fn new(window: u64) -> Self {
        Self {
            window,
            unacked: 0,
            aware: false,
        }
    }

    /// May another delta go out now?
    pub fn allow_delta(&self) -> bool {
        !self.aware || self.unacked < self.window
    }

    /// Pieces that may still go before the window is full (no limit for
    /// a client that never acked).
    pub fn room(&self) -> u64 {
        if self.aware {
            self.window.saturating_sub(self.unacked)
        } else {
            u64::MAX
        }
    }

    pub fn unacked(&self) -> u64 {
        self.unacked
    }

    /// A writer took `event` of the stream with marks `s`.
    pub fn taken(&mut self, s: &mut StreamCredits, event: &StreamEvent) {
        match event {
            // A stream id may be used again once its stream ended: the new
            // stream starts from zero, not from the old one's marks (which
            // would leak credits on every reuse).
            StreamEvent::Start(_) => *s = StreamCredits::default(),
            e if e.is_terminal() => {
                // Credits of an ended stream are forgotten with it.
                self.unacked = self.unacked.saturating_sub(s.outstanding());
                s.acked = s.emitted;
            }
            e => {
                if let Some(position) = e.position() {
                    s.emitted = position;
                    self.unacked += e.pieces();
                }
            }
        }
    }

    /// A writer could not send `event` after all and gave it back.
    pub fn returned(&mut self, s: &mut StreamCredits, event: &StreamEvent) {
        if let Some(position) = event.position() {
            self.unacked = self.unacked.saturating_sub(event.pieces());
            s.emitted = position.saturating_sub(event.pieces());
        }
    }

    /// `ai:ack` up to `position` for a stream with marks `s` (`None`: a
    /// stream the outbox no longer knows; a late ack is normal). True when
    /// credits were freed.
    pub fn acked(&mut self, s: Option<&mut StreamCredits>, position: u64) -> bool {
        self.aware = true;
        let Some(s) = s else { return false };
        let upto = position.min(s.emitted);
        if upto <= s.acked {
            return false;
        }
        self.unacked = self.unacked.saturating_sub(upto - s.acked);
        s.acked = upto;
        true
    }

    /// A resume: the client has the stream up to `from`; the marks start
    /// again there.
    pub fn rewound(&mut self, s: &mut StreamCredits, from: u64) {
        self.unacked = self.unacked.saturating_sub(s.outstanding());
        s.acked = from;
        s.emitted = from;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Done, StreamStart, Token};
    use std::sync::Arc;

    fn token(n: u64) -> StreamEvent {
        StreamEvent::Token(Token {
            stream_id: "s".into(),
            data: "x".into(),
            token_count: n,
            agent: None,
            metadata: None,
        })
    }

    fn start() -> StreamEvent {
        StreamEvent::Start(Box::new(StreamStart {
            stream_id: Arc::from("s"),
            provider: "p".into(),
            model: "m".into(),
            agent: None,
            intent: None,
            session_id: None,
            timestamp: 0,
        }))
    }

    fn done(n: u64) -> StreamEvent {
        StreamEvent::Done(Box::new(Done {
            stream_id: "s".into(),
            total_tokens: n,
            duration: 0,
            finish_reason: "stop".into(),
            usage: None,
            dropped_tokens: 0,
            full_response: None,
            session_id: None,
            turn: None,
            tool_calls: Vec::new(),
            reasoning: None,
        }))
    }

    #[test]
    fn the_window_holds_deltas_once_the_client_acks() {
        let mut c = Credits::new(2);
        let mut s = StreamCredits::default();
        c.taken(&mut s, &start());
        for n in 1..=3 {
            c.taken(&mut s, &token(n));
        }
        assert!(c.allow_delta(), "a client that never acked is not held");
        assert!(c.acked(Some(&mut s), 0) || c.unacked() == 3);
        assert!(!c.allow_delta(), "3 unacked >= window 2");
        assert!(c.acked(Some(&mut s), 2));
        assert!(c.allow_delta());
        c.returned(&mut s, &token(4));
        assert_eq!(c.unacked(), 0, "never below zero");
    }

    #[test]
    fn an_ended_or_restarted_stream_leaks_nothing() {
        let mut c = Credits::new(4);
        let mut s = StreamCredits::default();
        c.acked(None, 0);
        for _ in 0..50 {
            c.taken(&mut s, &start());
            c.taken(&mut s, &token(1));
            c.taken(&mut s, &token(2));
            c.taken(&mut s, &done(2));
            assert_eq!(c.unacked(), 0);
        }
    }
}
