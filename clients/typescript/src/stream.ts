// One token stream as the caller sees it: an async iterable of typed events
// that ends with exactly one terminal event, plus the text, reasoning and
// tool calls read so far and a promise of the outcome. It owns the stream's
// buffer (events arrived, not yet read), its positions and its acks; the
// gateway owns the connection and hands it the wire events of this stream.

import { Assembly, PositionGate } from "./assembly.js";
import type {
  Backpressure,
  CancelReason,
  Done,
  ProtocolErrorCode,
  Reasoning,
  StreamCancelled,
  StreamComplete,
  StreamErrorEvent,
  StreamRequest,
  StreamStart,
  Token,
  ToolCall,
  ToolCallDelta,
} from "./protocol.js";

/** Codes of failures the SDK itself reports, beside the protocol's. */
export type SdkErrorCode =
  /** The connection came back but the gateway refused to resume
   * (`ai:reconnect:failed`: the reconnect window ran out, or forbidden). */
  | "resume_failed"
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
export type DoneEvent = { type: "done" } & Done & Omit<StreamComplete, "streamId">;
export type CancelledEvent = { type: "cancelled" } & StreamCancelled;
export type FailureEvent = { type: "error" } & StreamFailure;
export type TerminalEvent = DoneEvent | CancelledEvent | FailureEvent;

/** Everything a stream's iterator yields, discriminated by `type`. */
export type StreamEvent =
  | ({ type: "start" } & StreamStart)
  | ({ type: "token" } & Token)
  | ({ type: "reasoning" } & Reasoning)
  | ({ type: "tool_call" } & ToolCallDelta)
  /** The client's backpressure changed (it is per connection, so every
   * live stream sees it, where it happened among its own events). */
  | ({ type: "backpressure" } & Backpressure)
  | TerminalEvent;

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
export type StreamResult = ResultBase &
  (
    | { status: "complete"; done: DoneEvent }
    | { status: "cancelled"; cancelled: CancelledEvent }
    | { status: "error"; error: StreamFailure }
  );

/** Where a stream is in its life on the connection (the gateway's view). */
export type StreamPhase =
  /** Waiting for a connection (or a resume) before `ai:stream` goes out. */
  | "queued"
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
export const ACK_EVERY_TOKENS = 32;
export const ACK_EVERY_MS = 100;

const RETRYABLE = new Set<string>([
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
export function isRetryable(code: string): boolean {
  return RETRYABLE.has(code);
}

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

export class Stream implements AsyncIterable<StreamEvent> {
  readonly id: string;
  readonly request: StreamRequest & { streamId: string };
  /** The gateway's bookkeeping (see `StreamPhase`). */
  phase: StreamPhase = "queued";
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
  readonly done: Promise<StreamResult>;
  #resolveDone!: (r: StreamResult) => void;

  readonly #host: StreamHost;
  readonly #gate = new PositionGate();
  readonly #assembly = new Assembly();
  #reader: Reader = "none";
  /** Caller: arrived and not yet read. SDK: every event, for a late loop. */
  readonly #buffer: StreamEvent[] = [];
  /** SDK: how many of `#buffer` a late loop has had. */
  #cursor = 0;
  #iterating = false;
  /** The caller's loop stopped (`break`): its iterator is done. */
  #loopClosed = false;
  #wake: (() => void) | undefined;
  #start: StreamStart | undefined;
  #complete: StreamComplete | undefined;
  #arrivedTerminal = false;
  #ended = false;
  #ackedSent = 0;
  #ackTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(request: StreamRequest & { streamId: string }, host: StreamHost, signal?: AbortSignal) {
    this.id = request.streamId;
    this.request = request;
    this.#host = host;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
    if (signal) {
      if (signal.aborted) this.cancelRequested = true;
      else signal.addEventListener("abort", () => this.cancel(), { once: true });
    }
  }

  /** The answer's text read so far (after `done`: repaired by
   * `fullResponse` when the drop policy dropped tokens). */
  get text(): string {
    return this.#assembly.text;
  }

  get reasoning(): string {
    return this.#assembly.reasoning;
  }

  /** Tool calls read so far, assembled from `ai:tool_call` pieces. */
  get toolCalls(): ToolCall[] {
    return this.#assembly.toolCalls;
  }

  /** The position the caller has read up to. */
  get position(): number {
    return this.#assembly.position;
  }

  /** The position that has arrived (what a resume asks after). */
  get received(): number {
    return this.#gate.last;
  }

  /** Events arrived and not yet read. */
  get buffered(): number {
    return this.#reader === "caller" ? this.#buffer.length : 0;
  }

  /** `ai:stream:start` once it has arrived: provider, model, agent, intent. */
  get start(): StreamStart | undefined {
    return this.#start;
  }

  /** Has any event of this stream arrived? */
  get seenAnything(): boolean {
    return this.#start !== undefined || this.#gate.last > 0;
  }

  /** Its terminal event has arrived: nothing more will. */
  get finished(): boolean {
    return this.#arrivedTerminal;
  }

  /** Stop the stream (also what the `signal` does). The iterator goes on
   * to the terminal event, `cancelled` with reason `client`, unless the
   * stream had ended by then. */
  cancel(): void {
    if (this.#arrivedTerminal || this.cancelRequested) return;
    this.cancelRequested = true;
    this.#host.cancel(this);
  }

  /** Read the stream to its end and return the outcome (for callers that
   * do not need the events one by one). */
  async collect(): Promise<StreamResult> {
    for await (const _ of this) {
      // Reading is what acknowledges: nothing else to do per event.
    }
    return this.done;
  }

  /** One loop per stream (reading is what acknowledges, so two loops
   * would each see part of it). Breaking out of the loop cancels the
   * stream if it is still running. */
  [Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    if (this.#iterating) throw new Error(`stream ${this.id} is already being read`);
    this.#iterating = true;
    if (this.#reader === "none") this.#reader = "caller";
    return {
      next: () => this.#next(),
      return: async () => {
        this.#loopClosed = true;
        this.cancel();
        if (this.#reader === "caller") this.#stopReading();
        return { done: true, value: undefined };
      },
    };
  }

  // -------------------------------------------------------------------------
  // Fed by the gateway

  /** A wire event of this stream (already routed by `streamId`). Returns
   * true when it was the stream's terminal event. */
  receive(name: string, payload: unknown): boolean {
    if (this.#arrivedTerminal) return false;
    const p = payload as Record<string, unknown>;
    switch (name) {
      case "ai:stream:start":
        if (this.#start) return false;
        this.#start = payload as StreamStart;
        this.#push({ type: "start", ...(payload as StreamStart) });
        return false;
      case "ai:token":
        return this.#positional({ type: "token", ...(payload as Token) });
      case "ai:reasoning":
        return this.#positional({ type: "reasoning", ...(payload as Reasoning) });
      case "ai:tool_call":
        return this.#positional({ type: "tool_call", ...(payload as ToolCallDelta) });
      case "ai:stream:complete":
        this.#complete = payload as StreamComplete;
        return false;
      case "ai:done": {
        const c = this.#complete;
        this.#terminal({
          type: "done",
          ...(payload as Done),
          agent: c?.agent ?? null,
          intent: c?.intent ?? null,
          confidence: c?.confidence ?? null,
        });
        return true;
      }
      case "ai:stream:cancelled":
        this.#terminal({ type: "cancelled", ...(payload as StreamCancelled) });
        return true;
      case "ai:stream:error": {
        const e = payload as StreamErrorEvent;
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
  backpressure(b: Backpressure): void {
    if (!this.#arrivedTerminal) this.#push({ type: "backpressure", ...b });
  }

  /** End the stream without the server (refused request, lost resume,
   * closed gateway, a cancel before it was ever sent). */
  fail(code: ErrorCode, message: string, retryable = isRetryable(code)): void {
    if (this.#arrivedTerminal) return;
    this.#terminal({ type: "error", streamId: this.id, code, message, retryable });
  }

  /** Cancelled before `ai:stream` went out: nothing to tell the server. */
  cancelLocally(reason: CancelReason = "client"): void {
    if (this.#arrivedTerminal) return;
    this.#terminal({ type: "cancelled", streamId: this.id, reason, tokenCount: 0 });
  }

  /** Send the ack that is due, if any (the gateway calls it when a
   * connection is back). */
  flushAck(): void {
    if (this.#ackTimer !== undefined) {
      clearTimeout(this.#ackTimer);
      this.#ackTimer = undefined;
    }
    const n = this.#assembly.position;
    if (this.#arrivedTerminal || n <= this.#ackedSent) return;
    if (this.#host.sendAck(this.id, n)) this.#ackedSent = n;
  }

  // -------------------------------------------------------------------------

  #positional(ev: StreamEvent & { tokenCount: number }): boolean {
    if (!this.#gate.admit(ev.tokenCount)) {
      this.repeatsDropped++;
      return false;
    }
    this.#push(ev);
    return false;
  }

  #terminal(ev: TerminalEvent): void {
    this.#arrivedTerminal = true;
    this.phase = "ended";
    this.#push(ev);
  }

  #push(ev: StreamEvent): void {
    // Nobody iterates by the time the first event arrives: the SDK reads.
    if (this.#reader === "none") this.#reader = "sdk";
    if (this.#reader !== "caller") this.#read(ev);
    if (this.#reader !== "gone") this.#buffer.push(ev);
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #next(): Promise<IteratorResult<StreamEvent>> {
    for (;;) {
      if (this.#loopClosed) return { done: true, value: undefined };
      if (this.#reader === "caller" && this.#buffer.length) {
        const ev = this.#buffer.shift()!;
        this.#read(ev);
        return { done: false, value: ev };
      }
      if (this.#reader === "sdk" && this.#cursor < this.#buffer.length) {
        return { done: false, value: this.#buffer[this.#cursor++]! };
      }
      if (this.#ended) return { done: true, value: undefined };
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** The caller has this event now: account for it. */
  #read(ev: StreamEvent): void {
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

  #scheduleAck(): void {
    if (this.#arrivedTerminal) return;
    if (this.#assembly.position - this.#ackedSent >= ACK_EVERY_TOKENS) return this.flushAck();
    this.#ackTimer ??= setTimeout(() => {
      this.#ackTimer = undefined;
      this.flushAck();
    }, ACK_EVERY_MS);
  }

  #finish(ev: TerminalEvent): void {
    this.#ended = true;
    if (this.#ackTimer !== undefined) clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    if (ev.type === "done") this.#assembly.finish(ev);
    const base: ResultBase = {
      streamId: this.id,
      text: this.text,
      reasoning: this.reasoning,
      toolCalls: this.toolCalls,
      position: this.position,
      start: this.#start,
    };
    const result: StreamResult =
      ev.type === "done"
        ? { ...base, status: "complete", done: ev }
        : ev.type === "cancelled"
          ? { ...base, status: "cancelled", cancelled: ev }
          : { ...base, status: "error", error: { streamId: ev.streamId, code: ev.code, message: ev.message, retryable: ev.retryable } };
    this.#resolveDone(result);
  }

  /** The caller's loop is gone: what arrived, and what still arrives,
   * counts as read, so its credits come back. */
  #stopReading(): void {
    this.#reader = "gone";
    while (this.#buffer.length) this.#read(this.#buffer.shift()!);
    this.flushAck();
  }
}
