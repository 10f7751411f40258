//! The end of a stream: the session's turn, then its terminal events.
//!
//! A completed stream ends with `ai:stream:complete` and `ai:done` (the
//! assembled tool calls, the reasoning data to send back, the finish reason
//! as the protocol names it: `tool_calls` when the model stopped to call
//! tools); a cancelled one with `ai:stream:cancelled` (and the usage as far
//! as known, estimated); a failed one with `ai:stream:error`. The turn is
//! appended before the terminal events are queued, so a client that sends
//! its next turn on `ai:done` finds the session free and up to date.

use super::guard::{EndedAs, StreamGuard};
use super::progress::Progress;
use super::task::Ending;
use crate::orchestrator::Route;
use crate::outbox::StreamEvent;
use crate::protocol::{Done, StreamCancelled, StreamComplete, StreamError, TurnStatus, Usage};
use crate::sessions::TurnReply;
use tokio::time::Instant;

/// Append the turn (if a session's) and queue the terminal events.
pub async fn finish(
    route: &Route,
    mut guard: StreamGuard,
    ending: Ending,
    mut progress: Progress,
    started: Instant,
) {
    let (reply, status) = turn_of(&ending, &mut progress);
    guard.end_turn(reply, status).await;
    let (events, ended) = terminal_events(route, &guard, ending, progress, started);
    guard.finish(events, ended);
}

fn terminal_events(
    route: &Route,
    guard: &StreamGuard,
    ending: Ending,
    progress: Progress,
    started: Instant,
) -> (Vec<StreamEvent>, EndedAs) {
    let id = guard.id().clone();
    let tokens = progress.position;
    match ending {
        Ending::Completed {
            finish_reason,
            usage,
        } => {
            let finish_reason = finish_reason_of(finish_reason, &progress);
            tracing::info!(tokens, %finish_reason, "stream completed");
            let session = guard.session_turn().map(|(id, turn)| (id.clone(), turn));
            let complete = StreamEvent::Complete(StreamComplete {
                stream_id: id.clone(),
                agent: route.agent.clone(),
                intent: route.intent.clone(),
                confidence: route.confidence,
            });
            let done = StreamEvent::Done(Box::new(Done {
                stream_id: id,
                total_tokens: tokens,
                duration: started.elapsed().as_millis() as u64,
                finish_reason,
                usage,
                dropped_tokens: progress.dropped,
                tool_calls: progress.tool_calls().to_vec(),
                reasoning: progress.reasoning_data(),
                full_response: progress.full.filter(|_| progress.dropped > 0),
                session_id: session.as_ref().map(|(id, _)| id.clone()),
                turn: session.map(|(_, turn)| turn),
            }));
            (vec![complete, done], EndedAs::Completed)
        }
        Ending::Cancelled(reason) => {
            tracing::info!(tokens, ?reason, "stream cancelled");
            let usage = estimated_usage(route, &progress);
            let cancelled = StreamEvent::Cancelled(Box::new(StreamCancelled {
                stream_id: id,
                reason,
                token_count: tokens,
                usage: Some(usage),
            }));
            (vec![cancelled], EndedAs::Cancelled)
        }
        Ending::Failed(err) => {
            tracing::warn!(tokens, error = %err, "stream failed");
            let wire = err.wire();
            let failed = StreamEvent::Failed(StreamError {
                stream_id: id,
                code: wire.code,
                error: wire.message,
                retryable: wire.retryable,
                status: wire.status,
            });
            (vec![failed], EndedAs::Failed)
        }
    }
}

/// The upstream's finish reason, as the protocol names it: a model that
/// made tool calls and stopped stopped to call tools.
fn finish_reason_of(upstream: String, progress: &Progress) -> String {
    if !progress.tool_calls().is_empty() && upstream == "stop" {
        "tool_calls".to_string()
    } else {
        upstream
    }
}

/// The gateway's own count for a stream the upstream never reported on.
fn estimated_usage(route: &Route, progress: &Progress) -> Usage {
    let prompt_chars = route.messages.iter().map(|m| m.content.text().len()).sum();
    progress.estimated_usage(prompt_chars)
}

/// The reply a session keeps for this stream, and the turn's status: what
/// the client received; on a completion with drops, the whole text, which
/// `ai:done.fullResponse` gave the client.
fn turn_of(ending: &Ending, progress: &mut Progress) -> (Option<TurnReply>, TurnStatus) {
    let status = match ending {
        Ending::Completed { .. } => TurnStatus::Complete,
        Ending::Cancelled(_) => TurnStatus::Cancelled,
        Ending::Failed(_) => TurnStatus::Error,
    };
    let repaired = matches!(ending, Ending::Completed { .. }) && progress.dropped > 0;
    let full = progress.full.clone();
    let mut reply = progress.take_reply();
    if let (Some(reply), Some(full), true) = (reply.as_mut(), full, repaired) {
        reply.text = full;
    }
    // Tool calls stand only in a completed turn (their arguments may be
    // cut short otherwise).
    if status != TurnStatus::Complete
        && let Some(r) = reply.as_mut()
    {
        r.tool_calls.clear();
    }
    (reply, status)
}
