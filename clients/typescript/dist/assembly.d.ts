import type { Done, Reasoning, Token, ToolCall, ToolCallDelta } from "./protocol.js";
/**
 * The arrival side of one stream's position.
 *
 * Every delta (`ai:token`, `ai:reasoning`, `ai:tool_call`) carries
 * `tokenCount`, the stream's position after it, which only grows. The last
 * position that arrived is what `ai:reconnect` sends as `lastTokenCount`,
 * and an event at or before it is one the client already has: the gateway
 * replays after the position it is given, so a repeat is only possible
 * when the SDK's view and the server's differ (an event that crossed the
 * cut), and dropping it is what keeps the caller's copy exact.
 */
export declare class PositionGate {
    #private;
    /** The position of the last event that moved the stream on. */
    get last(): number;
    /** True when `tokenCount` moves the stream on (and records it); false
     * for a repeat. */
    admit(tokenCount: number): boolean;
}
/**
 * What the caller has read of one stream: the answer's text, the model's
 * reasoning, and its tool calls assembled from `ai:tool_call` pieces.
 *
 * Tool calls are keyed by `index` (pieces of different calls may
 * interleave, and coalescing may merge consecutive pieces of one call);
 * `id` and `name` are repeated on every piece and kept from the latest one
 * that has them. When `ai:done` lists the calls whole, that list is the
 * answer (it is the server's own assembly of the same pieces).
 */
export declare class Assembly {
    #private;
    get text(): string;
    get reasoning(): string;
    /** The position of the last delta read. */
    get position(): number;
    /** The tool calls so far, in index order (copies: the caller may keep them). */
    get toolCalls(): ToolCall[];
    token(t: Token): void;
    reasoningDelta(r: Reasoning): void;
    toolCallDelta(d: ToolCallDelta): void;
    /** The stream completed: take the server's whole answer where it gave
     * one (`fullResponse` repairs text the drop policy left out; `toolCalls`
     * are the calls whole). */
    finish(done: Done): void;
}
