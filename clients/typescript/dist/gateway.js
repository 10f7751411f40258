// The connection to a gateway's `/ai` namespace over the official
// socket.io-client: it starts streams, routes each wire event to its
// stream, and carries the streams across lost connections (it sends
// `ai:reconnect` with every live stream's last position as the first request
// of the new connection, and holds everything else back until the resume
// has answered). Heartbeats, the typed gateway-level events and the
// "drop connection" switch live here too.
import { io } from "socket.io-client";
import { isRetryable, Stream } from "./stream.js";
/** Connect to the gateway at `url` (`http://host:3000`; `/ai` is added). */
export function connect(url, options = {}) {
    const { token, backpressurePolicy } = options;
    const socket = io(namespaceUrl(url), {
        ...options.socket,
        auth: (cb) => {
            const send = (t) => cb({ ...(t ? { token: t } : {}), ...(backpressurePolicy ? { backpressurePolicy } : {}) });
            if (typeof token === "function") {
                Promise.resolve()
                    .then(token)
                    .then(send, () => send(undefined));
            }
            else
                send(token);
        },
    });
    return new Gateway(socket);
}
/** `url` with the `/ai` namespace (kept when it is already there). */
export function namespaceUrl(url) {
    const trimmed = url.replace(/\/+$/, "");
    return trimmed.endsWith("/ai") ? trimmed : `${trimmed}/ai`;
}
const STREAM_EVENTS = [
    "ai:stream:start",
    "ai:token",
    "ai:reasoning",
    "ai:tool_call",
    "ai:stream:complete",
    "ai:done",
    "ai:stream:cancelled",
    "ai:stream:error",
];
export class Gateway {
    /** The first `ai:connected`; rejects (with a `GatewayFailure`) when the
     * handshake is refused for good, e.g. a missing or bad token. */
    ready;
    socket;
    #state = "connecting";
    #hello;
    /** Whose streams these are on the server: what a resume names. */
    #session;
    /** The `ai:connected` of a connection that is resuming. */
    #pendingHello;
    /** Streams asked for in the resume under way (unknown_stream answers). */
    #resumeAsked = new Set();
    /** Streams whose terminal event has not arrived, in creation order. */
    #streams = new Map();
    #connection = 0;
    #heartbeat;
    #backpressure;
    #takenOver = false;
    /** One set of listeners per event name (`on()` is what types them). */
    #listeners = new Map();
    #counters = { connections: 0, resumes: 0, resumeFailures: 0, acksSent: 0, repeatsDropped: 0 };
    #resolveReady;
    #rejectReady;
    #host;
    /** Drive an existing socket.io-client socket on `/ai` (`connect()` makes
     * one); it must not have received `ai:connected` yet. */
    constructor(socket) {
        this.socket = socket;
        this.ready = new Promise((resolve, reject) => {
            this.#resolveReady = resolve;
            this.#rejectReady = reject;
        });
        // A caller that never awaits `ready` learns of a refusal from the
        // streams and the `error` event; do not also report it as unhandled.
        this.ready.catch(() => { });
        this.#host = {
            sendAck: (streamId, tokenCount) => {
                if (this.#state !== "ready" || !this.socket.connected)
                    return false;
                this.socket.emit("ai:ack", { streamId, tokenCount });
                this.#counters.acksSent++;
                return true;
            },
            cancel: (stream) => this.#cancel(stream),
        };
        socket.on("ai:connected", (hello) => this.#onConnected(hello));
        socket.on("ai:reconnect:success", (r) => this.#onResumed(r));
        socket.on("ai:reconnect:failed", (f) => this.#onResumeFailed(f));
        socket.on("ai:backpressure", (b) => {
            this.#backpressure = b;
            for (const s of this.#streams.values())
                s.backpressure(b);
            this.#emit("backpressure", b);
        });
        socket.on("ai:heartbeat:ack", (h) => this.#emit("heartbeat", h));
        socket.on("ai:error", (e) => this.#onError(e));
        for (const name of STREAM_EVENTS) {
            socket.on(name, (payload) => this.#onStreamEvent(name, payload));
        }
        socket.on("disconnect", (reason) => this.#onDisconnect(reason));
        socket.on("connect_error", (err) => this.#onConnectError(err));
    }
    get state() {
        return this.#state;
    }
    /** The current connection's `ai:connected` (limits, windows, version). */
    get hello() {
        return this.#hello;
    }
    /** The client id the server knows this client by now (a resume renames it). */
    get clientId() {
        return this.#session?.clientId;
    }
    /** The last `ai:backpressure` (undefined until the first). */
    get backpressure() {
        return this.#backpressure;
    }
    get counters() {
        let repeats = this.#counters.repeatsDropped;
        for (const s of this.#streams.values())
            repeats += s.repeatsDropped;
        return { ...this.#counters, repeatsDropped: repeats };
    }
    /** Streams whose terminal event has not arrived yet. */
    get liveStreams() {
        return [...this.#streams.values()];
    }
    /** Listen to a gateway-level event; returns the function that stops it. */
    on(name, listener) {
        let set = this.#listeners.get(name);
        if (!set)
            this.#listeners.set(name, (set = new Set()));
        set.add(listener);
        return () => {
            set.delete(listener);
        };
    }
    /** Start a stream. It goes out as soon as the connection is ready (at
     * once when it is); read it with `for await`. */
    stream(request, options = {}) {
        const streamId = request.streamId ?? newStreamId();
        const stream = new Stream({ ...request, streamId }, this.#host, options.signal);
        if (this.#state === "closed") {
            stream.fail("closed", "the gateway connection is closed");
        }
        else if (this.#streams.has(streamId)) {
            // Its events could not be told apart from the live one's.
            stream.fail("duplicate_stream_id", `a live stream of this client has the id ${streamId}`);
        }
        else if (stream.cancelRequested) {
            stream.cancelLocally();
        }
        else {
            this.#streams.set(streamId, stream);
            if (this.#state === "ready")
                this.#send(stream);
        }
        return stream;
    }
    /** Cut the transport as a network failure would (the socket.io-client
     * reconnects by itself, and the SDK resumes): to show and test resume. */
    dropConnection() {
        this.socket.io.engine?.close();
    }
    /** Cancel the live streams, then close the connection for good. The
     * streams end with error `closed` (the server's answers cannot come). */
    close() {
        if (this.#state === "closed")
            return;
        if (this.socket.connected && this.#state === "ready") {
            for (const s of this.#streams.values()) {
                if (s.phase === "sent" || s.phase === "confirmed")
                    this.socket.emit("ai:cancel", { streamId: s.id });
            }
        }
        this.#shutDown("closed", "the gateway connection was closed by this client", false);
        this.socket.disconnect();
    }
    // -------------------------------------------------------------------------
    #emit(name, ...args) {
        for (const fn of this.#listeners.get(name) ?? []) {
            fn(...args);
        }
    }
    #setState(state) {
        if (this.#state === state)
            return;
        this.#state = state;
        this.#emit("state", state);
    }
    #onConnected(hello) {
        if (this.#state === "closed")
            return;
        this.#connection++;
        this.#counters.connections++;
        this.#hello = hello;
        this.#startHeartbeat(hello.heartbeatIntervalMs);
        this.#emit("connected", hello);
        // Streams sent on an earlier connection live on the server under the
        // previous client: take them over before anything else is sent (a
        // connection that runs streams of its own cannot resume).
        const carried = [...this.#streams.values()].filter((s) => s.phase === "sent" || s.phase === "confirmed");
        if (this.#session && carried.length) {
            this.#pendingHello = hello;
            this.#resumeAsked = new Set(carried.map((s) => s.id));
            this.#setState("resuming");
            this.socket.emit("ai:reconnect", {
                previousClientId: this.#session.clientId,
                resumeToken: this.#session.resumeToken,
                // Without its start the stream needs everything again (the
                // server replays the start only when no position is given).
                streams: carried.map((s) => (s.start ? { streamId: s.id, lastTokenCount: s.received } : { streamId: s.id })),
            });
            return;
        }
        this.#session = { clientId: hello.clientId, resumeToken: hello.resumeToken };
        this.#becomeReady();
        this.#resolveReady(hello);
    }
    #onResumed(r) {
        if (this.#state !== "resuming")
            return;
        this.#session = { clientId: r.newClientId, resumeToken: r.resumeToken };
        this.#pendingHello = undefined;
        this.#counters.resumes++;
        this.#becomeReady();
        this.#emit("resumed", r);
    }
    #onResumeFailed(f) {
        if (this.#state !== "resuming")
            return;
        this.#counters.resumeFailures++;
        for (const s of [...this.#streams.values()]) {
            if (s.phase === "sent" || s.phase === "confirmed") {
                this.#end(s);
                s.fail("resume_failed", `the gateway could not resume this stream after the connection was lost (${f.reason})`);
            }
        }
        // This connection is a client of its own now.
        const hello = this.#pendingHello;
        if (hello)
            this.#session = { clientId: hello.clientId, resumeToken: hello.resumeToken };
        this.#pendingHello = undefined;
        this.#resumeAsked.clear();
        this.#becomeReady();
        this.#emit("resume_failed", f);
    }
    /** Connected and not resuming: send what waited. */
    #becomeReady() {
        this.#setState("ready");
        for (const s of [...this.#streams.values()]) {
            if (s.phase === "queued") {
                if (s.cancelRequested) {
                    this.#end(s);
                    s.cancelLocally();
                }
                else
                    this.#send(s);
            }
            else {
                if (s.cancelRequested && s.cancelSentOn < this.#connection)
                    this.#sendCancel(s);
                s.flushAck();
            }
        }
    }
    #send(s) {
        s.phase = "sent";
        // "Read 0 of it": a client that has acked once is a credit client, so
        // the server limits what it sends from the stream's first token on
        // (without an ack it would not until the first real one). Sent before
        // the request, it can only ever find the stream without events.
        this.socket.emit("ai:ack", { streamId: s.id, tokenCount: 0 });
        this.#counters.acksSent++;
        this.socket.emitWithAck("ai:stream", s.request).then((ack) => {
            if (s.phase === "ended")
                return;
            if (ack.ok) {
                s.phase = "confirmed";
            }
            else if (ack.error.code === "duplicate_stream_id" && s.reissued) {
                // Sent again after a resume knew nothing of it, but the server
                // has it after all (it had produced nothing yet): it is live.
                s.phase = "confirmed";
            }
            else {
                this.#end(s);
                s.fail(ack.error.code, ack.error.message);
            }
        }, 
        // The connection went before the answer: the resume will find the
        // stream, or say it does not know it (then it is sent again).
        () => { });
    }
    #cancel(s) {
        if (s.phase === "ended")
            return;
        if (s.phase === "queued") {
            this.#end(s);
            s.cancelLocally();
            return;
        }
        if (this.#state === "ready" && this.socket.connected)
            this.#sendCancel(s);
        // Otherwise it goes out when the connection is back (#becomeReady).
    }
    #sendCancel(s) {
        s.cancelSentOn = this.#connection;
        this.socket.emit("ai:cancel", { streamId: s.id });
    }
    #onStreamEvent(name, payload) {
        const s = payload && typeof payload.streamId === "string" ? this.#streams.get(payload.streamId) : undefined;
        if (!s)
            return;
        if (s.receive(name, payload))
            this.#end(s);
    }
    /** The stream's terminal event is in (or it ended locally): the
     * connection has nothing more to do for it. */
    #end(s) {
        s.phase = "ended";
        this.#counters.repeatsDropped += s.repeatsDropped;
        s.repeatsDropped = 0;
        this.#streams.delete(s.id);
        this.#resumeAsked.delete(s.id);
    }
    #onError(e) {
        const id = typeof e.details?.streamId === "string" ? e.details.streamId : undefined;
        const s = id === undefined ? undefined : this.#streams.get(id);
        if (s && e.code === "unknown_stream" && this.#resumeAsked.delete(s.id)) {
            if (!s.seenAnything && s.cancelRequested) {
                this.#end(s);
                s.cancelLocally();
            }
            else if (!s.seenAnything) {
                // Nothing of it arrived: either the request never reached the
                // server, or it has not produced anything yet (the server does not
                // count it then). Sending it again settles it either way.
                s.reissued = true;
                this.#send(s);
            }
            else {
                this.#end(s);
                s.fail("unknown_stream", "the gateway no longer has this stream, so it could not be resumed", true);
            }
            return;
        }
        // A refused `ai:stream` is answered by its ack too, which ends it.
        if (s)
            return;
        if (e.code === "unauthorized" && e.details?.reason === "taken_over")
            this.#takenOver = true;
        this.#emit("error", { code: e.code, message: e.error, retryable: isRetryable(e.code), details: e.details });
    }
    #onDisconnect(reason) {
        this.#stopHeartbeat();
        if (this.#state === "closed")
            return;
        if (reason === "io server disconnect") {
            if (this.#takenOver) {
                this.#shutDown("disconnected", "another connection took this client over (ai:reconnect)", false);
                return;
            }
            // The server closed this connection (a stale heartbeat, say):
            // socket.io-client leaves that to us; come back and resume.
            this.socket.connect();
        }
        this.#setState("connecting");
    }
    #onConnectError(err) {
        if (this.#state === "closed")
            return;
        // socket.io-client retries transport failures by itself (`active`);
        // a refusal by the namespace's middleware is final.
        if (this.socket.active)
            return;
        const m = /^([a-z_]+): (.*)$/s.exec(err.message);
        const code = (m?.[1] ?? "disconnected");
        const message = m?.[2] ?? err.message;
        this.#shutDown(code, `the gateway refused the connection: ${message}`, isRetryable(code));
    }
    /** End every stream with this failure and stop for good. */
    #shutDown(code, message, retryable) {
        this.#stopHeartbeat();
        const failure = { code, message, retryable };
        for (const s of [...this.#streams.values()]) {
            this.#end(s);
            s.fail(code, message, retryable);
        }
        this.#setState("closed");
        this.#rejectReady(failure);
        if (code !== "closed")
            this.#emit("error", failure);
    }
    #startHeartbeat(intervalMs) {
        this.#stopHeartbeat();
        if (!(intervalMs > 0))
            return;
        this.#heartbeat = setInterval(() => {
            if (this.#state === "ready" && this.socket.connected)
                this.socket.emit("ai:heartbeat", {});
        }, intervalMs);
    }
    #stopHeartbeat() {
        if (this.#heartbeat !== undefined)
            clearInterval(this.#heartbeat);
        this.#heartbeat = undefined;
    }
}
/** A stream id the server accepts (1..=64 of [A-Za-z0-9_.:-]); unique per
 * client is enough (the server checks ownership, not secrecy). Node 18 has
 * no global `crypto`, hence the fallback. */
function newStreamId() {
    const bytes = new Uint8Array(8);
    if (globalThis.crypto?.getRandomValues)
        globalThis.crypto.getRandomValues(bytes);
    else
        for (let i = 0; i < bytes.length; i++)
            bytes[i] = Math.floor(Math.random() * 256);
    return `sdk_${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
