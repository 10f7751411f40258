// One token stream as the caller sees it: an async iterable of typed events
// that ends with exactly one terminal event, plus the text, reasoning and
// tool calls read so far and a promise of the outcome. It owns the stream's
// buffer (events arrived, not yet read), its positions and its acks; the
// gateway owns the connection and hands it the wire events of this stream.
import { Assembly, PositionGate } from "./assembly.js";
/** The protocol's `ai:ack` cadence: at least every 32 tokens or 100 ms. */
export const ACK_EVERY_TOKENS = 32;
export const ACK_EVERY_MS = 100;
const RETRYABLE = new Set([
    "rate_limited",
    "too_many_streams",
    "upstream_unavailable",
    "upstream_error",
    "timeout",
    "internal",
    "session_busy",
    "node_lost",
    "resume_failed",
]);
/** The protocol's retryable column for `code`. */
export function isRetryable(code) {
    return RETRYABLE.has(code);
}
export class Stream {
    id;
    request;
    /** The gateway's bookkeeping (see `StreamPhase`). */
    phase = "queued";
    /** Connection number the last `ai:cancel` went out on (one per connection). */
    cancelSentOn = -1;
    /** The request was sent again after a resume found nothing of it. */
    reissued = false;
    /** The caller asked for a cancel (sent once connected). */
    cancelRequested = false;
    /** Events dropped on arrival because the client already had them. */
    repeatsDropped = 0;
    /** The outcome, once the stream has ended and has been read to its end
     * (by the caller's loop, or by the SDK when nobody iterates: see
     * `Reader`). It never rejects: failures are values. */
    done;
    #resolveDone;
    #host;
    #gate = new PositionGate();
    #assembly = new Assembly();
    #reader = "none";
    /** Caller: arrived and not yet read. SDK: every event, for a late loop. */
    #buffer = [];
    /** SDK: how many of `#buffer` a late loop has had. */
    #cursor = 0;
    #iterating = false;
    /** The caller's loop stopped (`break`): its iterator is done. */
    #loopClosed = false;
    #wake;
    #start;
    #complete;
    #arrivedTerminal = false;
    #ended = false;
    #ackedSent = 0;
    #ackTimer;
    constructor(request, host, signal) {
        this.id = request.streamId;
        this.request = request;
        this.#host = host;
        this.done = new Promise((resolve) => (this.#resolveDone = resolve));
        if (signal) {
            if (signal.aborted)
                this.cancelRequested = true;
            else
                signal.addEventListener("abort", () => this.cancel(), { once: true });
        }
    }
    /** The answer's text read so far (after `done`: repaired by
     * `fullResponse` when the drop policy dropped tokens). */
    get text() {
        return this.#assembly.text;
    }
    get reasoning() {
        return this.#assembly.reasoning;
    }
    /** Tool calls read so far, assembled from `ai:tool_call` pieces. */
    get toolCalls() {
        return this.#assembly.toolCalls;
    }
    /** The position the caller has read up to. */
    get position() {
        return this.#assembly.position;
    }
    /** The position that has arrived (what a resume asks after). */
    get received() {
        return this.#gate.last;
    }
    /** Events arrived and not yet read. */
    get buffered() {
        return this.#reader === "caller" ? this.#buffer.length : 0;
    }
    /** `ai:stream:start` once it has arrived: provider, model, agent, intent. */
    get start() {
        return this.#start;
    }
    /** Has any event of this stream arrived? */
    get seenAnything() {
        return this.#start !== undefined || this.#gate.last > 0;
    }
    /** Its terminal event has arrived: nothing more will. */
    get finished() {
        return this.#arrivedTerminal;
    }
    /** Stop the stream (also what the `signal` does). The iterator goes on
     * to the terminal event, `cancelled` with reason `client`, unless the
     * stream had ended by then. */
    cancel() {
        if (this.#arrivedTerminal || this.cancelRequested)
            return;
        this.cancelRequested = true;
        this.#host.cancel(this);
    }
    /** Read the stream to its end and return the outcome (for callers that
     * do not need the events one by one). */
    async collect() {
        for await (const _ of this) {
            // Reading is what acknowledges: nothing else to do per event.
        }
        return this.done;
    }
    /** One loop per stream (reading is what acknowledges, so two loops
     * would each see part of it). Breaking out of the loop cancels the
     * stream if it is still running. */
    [Symbol.asyncIterator]() {
        if (this.#iterating)
            throw new Error(`stream ${this.id} is already being read`);
        this.#iterating = true;
        if (this.#reader === "none")
            this.#reader = "caller";
        return {
            next: () => this.#next(),
            return: async () => {
                this.#loopClosed = true;
                this.cancel();
                if (this.#reader === "caller")
                    this.#stopReading();
                return { done: true, value: undefined };
            },
        };
    }
    // -------------------------------------------------------------------------
    // Fed by the gateway
    /** A wire event of this stream (already routed by `streamId`). Returns
     * true when it was the stream's terminal event. */
    receive(name, payload) {
        if (this.#arrivedTerminal)
            return false;
        const p = payload;
        switch (name) {
            case "ai:stream:start":
                if (this.#start)
                    return false;
                this.#start = payload;
                this.#push({ type: "start", ...payload });
                return false;
            case "ai:token":
                return this.#positional({ type: "token", ...payload });
            case "ai:reasoning":
                return this.#positional({ type: "reasoning", ...payload });
            case "ai:tool_call":
                return this.#positional({ type: "tool_call", ...payload });
            case "ai:stream:complete":
                this.#complete = payload;
                return false;
            case "ai:done": {
                const c = this.#complete;
                this.#terminal({
                    type: "done",
                    ...payload,
                    agent: c?.agent ?? null,
                    intent: c?.intent ?? null,
                    confidence: c?.confidence ?? null,
                });
                return true;
            }
            case "ai:stream:cancelled":
                this.#terminal({ type: "cancelled", ...payload });
                return true;
            case "ai:stream:error": {
                const e = payload;
                this.#terminal({
                    type: "error",
                    streamId: this.id,
                    code: e.code,
                    message: String(p.error ?? ""),
                    retryable: Boolean(e.retryable),
                });
                return true;
            }
            default:
                return false;
        }
    }
    /** The client's backpressure changed. */
    backpressure(b) {
        if (!this.#arrivedTerminal)
            this.#push({ type: "backpressure", ...b });
    }
    /** End the stream without the server (refused request, lost resume,
     * closed gateway, a cancel before it was ever sent). */
    fail(code, message, retryable = isRetryable(code)) {
        if (this.#arrivedTerminal)
            return;
        this.#terminal({ type: "error", streamId: this.id, code, message, retryable });
    }
    /** Cancelled before `ai:stream` went out: nothing to tell the server. */
    cancelLocally(reason = "client") {
        if (this.#arrivedTerminal)
            return;
        this.#terminal({ type: "cancelled", streamId: this.id, reason, tokenCount: 0 });
    }
    /** Send the ack that is due, if any (the gateway calls it when a
     * connection is back). */
    flushAck() {
        if (this.#ackTimer !== undefined) {
            clearTimeout(this.#ackTimer);
            this.#ackTimer = undefined;
        }
        const n = this.#assembly.position;
        if (this.#arrivedTerminal || n <= this.#ackedSent)
            return;
        if (this.#host.sendAck(this.id, n))
            this.#ackedSent = n;
    }
    // -------------------------------------------------------------------------
    #positional(ev) {
        if (!this.#gate.admit(ev.tokenCount)) {
            this.repeatsDropped++;
            return false;
        }
        this.#push(ev);
        return false;
    }
    #terminal(ev) {
        this.#arrivedTerminal = true;
        this.phase = "ended";
        this.#push(ev);
    }
    #push(ev) {
        // Nobody iterates by the time the first event arrives: the SDK reads.
        if (this.#reader === "none")
            this.#reader = "sdk";
        if (this.#reader !== "caller")
            this.#read(ev);
        if (this.#reader !== "gone")
            this.#buffer.push(ev);
        const wake = this.#wake;
        this.#wake = undefined;
        wake?.();
    }
    async #next() {
        for (;;) {
            if (this.#loopClosed)
                return { done: true, value: undefined };
            if (this.#reader === "caller" && this.#buffer.length) {
                const ev = this.#buffer.shift();
                this.#read(ev);
                return { done: false, value: ev };
            }
            if (this.#reader === "sdk" && this.#cursor < this.#buffer.length) {
                return { done: false, value: this.#buffer[this.#cursor++] };
            }
            if (this.#ended)
                return { done: true, value: undefined };
            await new Promise((resolve) => (this.#wake = resolve));
        }
    }
    /** The caller has this event now: account for it. */
    #read(ev) {
        switch (ev.type) {
            case "token":
                this.#assembly.token(ev);
                return this.#scheduleAck();
            case "reasoning":
                this.#assembly.reasoningDelta(ev);
                return this.#scheduleAck();
            case "tool_call":
                this.#assembly.toolCallDelta(ev);
                return this.#scheduleAck();
            case "done":
            case "cancelled":
            case "error":
                return this.#finish(ev);
            default:
                return;
        }
    }
    #scheduleAck() {
        if (this.#arrivedTerminal)
            return;
        if (this.#assembly.position - this.#ackedSent >= ACK_EVERY_TOKENS)
            return this.flushAck();
        this.#ackTimer ??= setTimeout(() => {
            this.#ackTimer = undefined;
            this.flushAck();
        }, ACK_EVERY_MS);
    }
    #finish(ev) {
        this.#ended = true;
        if (this.#ackTimer !== undefined)
            clearTimeout(this.#ackTimer);
        this.#ackTimer = undefined;
        if (ev.type === "done")
            this.#assembly.finish(ev);
        const base = {
            streamId: this.id,
            text: this.text,
            reasoning: this.reasoning,
            toolCalls: this.toolCalls,
            position: this.position,
            start: this.#start,
        };
        const result = ev.type === "done"
            ? { ...base, status: "complete", done: ev }
            : ev.type === "cancelled"
                ? { ...base, status: "cancelled", cancelled: ev }
                : { ...base, status: "error", error: { streamId: ev.streamId, code: ev.code, message: ev.message, retryable: ev.retryable } };
        this.#resolveDone(result);
    }
    /** The caller's loop is gone: what arrived, and what still arrives,
     * counts as read, so its credits come back. */
    #stopReading() {
        this.#reader = "gone";
        while (this.#buffer.length)
            this.#read(this.#buffer.shift());
        this.flushAck();
    }
}
