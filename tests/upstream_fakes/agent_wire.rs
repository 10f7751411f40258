//! Agent turns in each provider's exact streaming format: reasoning, text
//! and tool calls with their arguments in pieces (OpenAI SSE keyed by
//! index, Anthropic content blocks, Ollama NDJSON with whole calls), and
//! [`rechunk`] to cut the bytes where no event boundary falls.

use super::{anthropic_event, openai_chunk};
use serde_json::{Value, json};

/// A tool call as a test scripts it: id, name, argument pieces.
pub type ScriptedCall<'a> = (&'a str, &'a str, &'a [&'a str]);

/// OpenAI's text answer: each piece a content delta, `stop`, usage.
pub fn openai_text(pieces: &[&str]) -> Vec<String> {
    let mut out = vec![openai_chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    out.extend(
        pieces
            .iter()
            .map(|p| openai_chunk(json!({ "content": p }), Value::Null)),
    );
    out.push(openai_chunk(json!({}), json!("stop")));
    out.push(openai_usage(
        json!({"prompt_tokens": 40, "completion_tokens": pieces.len(),
        "total_tokens": 40 + pieces.len()}),
    ));
    out.push("data: [DONE]\n\n".into());
    out
}

/// The usage chunk `stream_options.include_usage` asks for.
pub fn openai_usage(usage: Value) -> String {
    let u = json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1,
        "model": "m", "choices": [], "usage": usage});
    format!("data: {u}\n\n")
}

/// OpenAI's tool-call turn: reasoning pieces, then the calls' argument
/// pieces interleaved by index (id, type and name only on a call's first
/// piece), `tool_calls`, and usage with reasoning and cached tokens.
pub fn openai_tool_calls(reasoning: &[&str], calls: &[ScriptedCall]) -> Vec<String> {
    let mut out = vec![openai_chunk(
        json!({"role": "assistant", "content": null}),
        Value::Null,
    )];
    out.extend(
        reasoning
            .iter()
            .map(|r| openai_chunk(json!({ "reasoning_content": r }), Value::Null)),
    );
    let longest = calls.iter().map(|c| c.2.len()).max().unwrap_or(0);
    for piece in 0..longest {
        for (index, (id, name, args)) in calls.iter().enumerate() {
            let Some(arguments) = args.get(piece) else {
                continue;
            };
            let call = if piece == 0 {
                json!({"index": index, "id": id, "type": "function",
                       "function": {"name": name, "arguments": arguments}})
            } else {
                json!({"index": index, "function": {"arguments": arguments}})
            };
            out.push(openai_chunk(json!({ "tool_calls": [call] }), Value::Null));
        }
    }
    out.push(openai_chunk(json!({}), json!("tool_calls")));
    out.push(openai_usage(
        json!({"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 3}}),
    ));
    out.push("data: [DONE]\n\n".into());
    out
}

/// Anthropic's turn: a thinking block with its signature, a text block,
/// then one `tool_use` block per call with `input_json_delta` pieces;
/// `tool_use` as the stop reason when there are calls.
pub fn anthropic_answer(thinking: &[&str], text: &[&str], calls: &[ScriptedCall]) -> Vec<String> {
    let mut out = vec![anthropic_event(
        "message_start",
        json!({"type": "message_start",
        "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
            "model": "claude", "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 30, "cache_read_input_tokens": 5,
                      "cache_creation_input_tokens": 2, "output_tokens": 1}}}),
    )];
    let mut block = 0;
    if !thinking.is_empty() {
        out.push(block_start(
            block,
            json!({"type": "thinking", "thinking": ""}),
        ));
        out.extend(
            thinking
                .iter()
                .map(|t| block_delta(block, json!({"type": "thinking_delta", "thinking": t}))),
        );
        out.push(block_delta(
            block,
            json!({"type": "signature_delta", "signature": "EqQBCgIYAhIM"}),
        ));
        out.push(block_stop(block));
        block += 1;
    }
    if !text.is_empty() {
        out.push(block_start(block, json!({"type": "text", "text": ""})));
        out.extend(
            text.iter()
                .map(|t| block_delta(block, json!({"type": "text_delta", "text": t}))),
        );
        out.push(block_stop(block));
        block += 1;
    }
    for (id, name, args) in calls {
        out.push(block_start(
            block,
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
        ));
        out.extend(args.iter().map(|a| {
            block_delta(
                block,
                json!({"type": "input_json_delta", "partial_json": a}),
            )
        }));
        out.push(block_stop(block));
        block += 1;
    }
    let reason = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    out.push(anthropic_event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": null}, "usage": {"output_tokens": 12}}),
    ));
    out.push(anthropic_event(
        "message_stop",
        json!({"type": "message_stop"}),
    ));
    out
}

fn block_start(index: u32, block: Value) -> String {
    anthropic_event(
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": block}),
    )
}

fn block_delta(index: u32, delta: Value) -> String {
    anthropic_event(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

fn block_stop(index: u32) -> String {
    anthropic_event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    )
}

/// Ollama's turn: thinking lines, text lines, every tool call whole in
/// one line (Ollama gives calls no ids), then the done line with counts.
pub fn ollama_answer(thinking: &[&str], text: &[&str], calls: &[(&str, Value)]) -> Vec<String> {
    let line = |message: Value| {
        format!(
            "{}\n",
            json!({"model": "m", "created_at": "2026-12-02T00:00:00Z",
        "message": message, "done": false})
        )
    };
    let mut out: Vec<String> = thinking
        .iter()
        .map(|t| line(json!({"role": "assistant", "content": "", "thinking": t})))
        .collect();
    out.extend(
        text.iter()
            .map(|t| line(json!({"role": "assistant", "content": t}))),
    );
    if !calls.is_empty() {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(name, args)| json!({"function": {"name": name, "arguments": args}}))
            .collect();
        out.push(line(
            json!({"role": "assistant", "content": "", "tool_calls": calls}),
        ));
    }
    out.push(format!(
        "{}\n",
        json!({"model": "m", "created_at": "2026-12-02T00:00:01Z",
        "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
        "prompt_eval_count": 9, "eval_count": 4})
    ));
    out
}

/// The same bytes cut every `size` bytes (on char boundaries), so HTTP
/// chunks fall inside events, field names and JSON strings.
pub fn rechunk(parts: &[String], size: usize) -> Vec<String> {
    let all = parts.concat();
    let mut out = Vec::new();
    let mut current = String::new();
    for c in all.chars() {
        current.push(c);
        if current.len() >= size {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}
