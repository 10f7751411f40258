import type { Backpressure, CancelReason, Done, ProtocolErrorCode, Reasoning, StreamCancelled, StreamComplete, StreamRequest, StreamStart, Token, ToolCall, ToolCallDelta } from "./protocol.js";
/** Codes of failures the SDK itself reports, beside the protocol's. */
export type SdkErrorCode = 
/** The connection came back but the gateway refused to resume
 * (`ai:reconnect:failed`: the reconnect window ran out, or forbidden). */
"resume_failed"
/** `gateway.close()` ended the stream. */
 | "closed"
/** The connection is gone for good (refused handshake, taken over). */
 | "disconnected";
export type ErrorCode = ProtocolErrorCode | SdkErrorCode;
/** Why a stream failed, as a value (the SDK never throws for a stream). */
export interface StreamFailure {
    streamId: string;
    code: ErrorCode;
    message: string;
    /** The protocol's table: trying the same request again may work. */
    retryable: boolean;
}
/** `ai:done` with what `ai:stream:complete` said just before it. */
export type DoneEvent = {
    type: "done";
} & Done & Omit<StreamComplete, "streamId">;
export type CancelledEvent = {
    type: "cancelled";
} & StreamCancelled;
export type FailureEvent = {
    type: "error";
} & StreamFailure;
export type TerminalEvent = DoneEvent | CancelledEvent | FailureEvent;
/** Everything a stream's iterator yields, discriminated by `type`. */
export type StreamEvent = ({
    type: "start";
} & StreamStart) | ({
    type: "token";
} & Token) | ({
    type: "reasoning";
} & Reasoning) | ({
    type: "tool_call";
} & ToolCallDelta)
/** The client's backpressure changed (it is per connection, so every
 * live stream sees it, where it happened among its own events). */
 | ({
    type: "backpressure";
} & Backpressure) | TerminalEvent;
interface ResultBase {
    streamId: string;
    text: string;
    reasoning: string;
    toolCalls: ToolCall[];
    /** The last position read. */
    position: number;
    /** Who served it (absent when it failed before it started). */
    start: StreamStart | undefined;
}
/** How a stream ended, with everything it produced. */
export type StreamResult = ResultBase & ({
    status: "complete";
    done: DoneEvent;
} | {
    status: "cancelled";
    cancelled: CancelledEvent;
} | {
    status: "error";
    error: StreamFailure;
});
/** Where a stream is in its life on the connection (the gateway's view). */
export type StreamPhase = 
/** Waiting for a connection (or a resume) before `ai:stream` goes out. */
"queued"
/** `ai:stream` sent; no answer yet (a cut may lose it: resume decides). */
 | "sent"
/** The server accepted it. */
 | "confirmed"
/** Its terminal event arrived (or it ended locally). */
 | "ended";
/** What a stream needs from its gateway. */
export interface StreamHost {
    /** Send `ai:ack`; false when it cannot go now (no connection). */
    sendAck(streamId: string, tokenCount: number): boolean;
    /** The caller wants the stream stopped. */
    cancel(stream: Stream): void;
}
/** The protocol's `ai:ack` cadence: at least every 32 tokens or 100 ms. */
export declare const ACK_EVERY_TOKENS = 32;
export declare const ACK_EVERY_MS = 100;
/** The protocol's retryable column for `code`. */
export declare function isRetryable(code: string): boolean;
/**
 * Who reads a stream, which decides when it is acknowledged:
 * - `caller`: the caller's `for await` (it began before the first event
 *   arrived): acks follow what the loop has taken, so a slow loop engages
 *   the server's credits;
 * - `sdk`: nobody iterated when the first event arrived, so the SDK reads
 *   on arrival (acks follow arrival; `await s.done` alone never stalls),
 *   and a loop that starts later still gets every event from the start;
 * - `gone`: the caller broke out of its loop; the rest is read and dropped;
 * - `none`: nothing has arrived yet.
 */
export type Reader = "none" | "caller" | "sdk" | "gone";
export declare class Stream implements AsyncIterable<StreamEvent> {
    #private;
    readonly id: string;
    readonly request: StreamRequest & {
        streamId: string;
    };
    /** The gateway's bookkeeping (see `StreamPhase`). */
    phase: StreamPhase;
    /** Connection number the last `ai:cancel` went out on (one per connection). */
    cancelSentOn: number;
    /** The request was sent again after a resume found nothing of it. */
    reissued: boolean;
    /** The caller asked for a cancel (sent once connected). */
    cancelRequested: boolean;
    /** Events dropped on arrival because the client already had them. */
    repeatsDropped: number;
    /** The outcome, once the stream has ended and has been read to its end
     * (by the caller's loop, or by the SDK when nobody iterates: see
     * `Reader`). It never rejects: failures are values. */
    readonly done: Promise<StreamResult>;
    constructor(request: StreamRequest & {
        streamId: string;
    }, host: StreamHost, signal?: AbortSignal);
    /** The answer's text read so far (after `done`: repaired by
     * `fullResponse` when the drop policy dropped tokens). */
    get text(): string;
    get reasoning(): string;
    /** Tool calls read so far, assembled from `ai:tool_call` pieces. */
    get toolCalls(): ToolCall[];
    /** The position the caller has read up to. */
    get position(): number;
    /** The position that has arrived (what a resume asks after). */
    get received(): number;
    /** Events arrived and not yet read. */
    get buffered(): number;
    /** `ai:stream:start` once it has arrived: provider, model, agent, intent. */
    get start(): StreamStart | undefined;
    /** Has any event of this stream arrived? */
    get seenAnything(): boolean;
    /** Its terminal event has arrived: nothing more will. */
    get finished(): boolean;
    /** Stop the stream (also what the `signal` does). The iterator goes on
     * to the terminal event, `cancelled` with reason `client`, unless the
     * stream had ended by then. */
    cancel(): void;
    /** Read the stream to its end and return the outcome (for callers that
     * do not need the events one by one). */
    collect(): Promise<StreamResult>;
    /** One loop per stream (reading is what acknowledges, so two loops
     * would each see part of it). Breaking out of the loop cancels the
     * stream if it is still running. */
    [Symbol.asyncIterator](): AsyncIterator<StreamEvent>;
    /** A wire event of this stream (already routed by `streamId`). Returns
     * true when it was the stream's terminal event. */
    receive(name: string, payload: unknown): boolean;
    /** The client's backpressure changed. */
    backpressure(b: Backpressure): void;
    /** End the stream without the server (refused request, lost resume,
     * closed gateway, a cancel before it was ever sent). */
    fail(code: ErrorCode, message: string, retryable?: boolean): void;
    /** Cancelled before `ai:stream` went out: nothing to tell the server. */
    cancelLocally(reason?: CancelReason): void;
    /** Send the ack that is due, if any (the gateway calls it when a
     * connection is back). */
    flushAck(): void;
}
export {};
