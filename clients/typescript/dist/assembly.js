// The two pieces of bookkeeping a stream needs that involve no I/O, kept
// apart so that they can be tested by feeding them events:
// `PositionGate` decides on arrival whether an event is new (a resume may
// replay what the client already has), and `Assembly` builds the text, the
// reasoning and the tool calls out of the events the caller has read.
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
export class PositionGate {
    #last = 0;
    /** The position of the last event that moved the stream on. */
    get last() {
        return this.#last;
    }
    /** True when `tokenCount` moves the stream on (and records it); false
     * for a repeat. */
    admit(tokenCount) {
        if (!(tokenCount > this.#last))
            return false;
        this.#last = tokenCount;
        return true;
    }
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
export class Assembly {
    #text = "";
    #reasoning = "";
    #position = 0;
    #calls = new Map();
    #finalCalls;
    get text() {
        return this.#text;
    }
    get reasoning() {
        return this.#reasoning;
    }
    /** The position of the last delta read. */
    get position() {
        return this.#position;
    }
    /** The tool calls so far, in index order (copies: the caller may keep them). */
    get toolCalls() {
        if (this.#finalCalls)
            return this.#finalCalls.map((c) => ({ ...c }));
        return [...this.#calls.entries()].sort(([a], [b]) => a - b).map(([, c]) => ({ ...c }));
    }
    token(t) {
        this.#text += t.data;
        this.#position = t.tokenCount;
    }
    reasoningDelta(r) {
        this.#reasoning += r.data;
        this.#position = r.tokenCount;
    }
    toolCallDelta(d) {
        let call = this.#calls.get(d.index);
        if (!call) {
            call = { id: d.id ?? "", name: d.name ?? "", arguments: "" };
            this.#calls.set(d.index, call);
        }
        if (d.id)
            call.id = d.id;
        if (d.name)
            call.name = d.name;
        call.arguments += d.argumentsDelta ?? "";
        this.#position = d.tokenCount;
    }
    /** The stream completed: take the server's whole answer where it gave
     * one (`fullResponse` repairs text the drop policy left out; `toolCalls`
     * are the calls whole). */
    finish(done) {
        if (typeof done.fullResponse === "string")
            this.#text = done.fullResponse;
        if (Array.isArray(done.toolCalls))
            this.#finalCalls = done.toolCalls.map((c) => ({ ...c }));
    }
}
