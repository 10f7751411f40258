import { type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import type { Backpressure, BackpressurePolicy, ClientToServerEvents, Connected, HeartbeatAck, ReconnectFailed, ReconnectSuccess, ServerToClientEvents, StreamRequest } from "./protocol.js";
import { type ErrorCode, Stream } from "./stream.js";
/** The socket.io-client socket on `/ai`, typed with the protocol's events. */
export type GatewaySocket = Socket<ServerToClientEvents, ClientToServerEvents>;
/** A JWT, or a function that returns one (called on every connection, so
 * a reconnection can use a fresh token). */
export type TokenSource = string | (() => string | Promise<string>);
export interface ConnectOptions {
    /** Required when the gateway has auth on. */
    token?: TokenSource;
    backpressurePolicy?: BackpressurePolicy;
    /** Passed to socket.io-client's `io()` (transports, reconnection delays,
     * `path`, …); `auth` is the SDK's. */
    socket?: Partial<ManagerOptions & SocketOptions>;
}
export interface StreamOptions {
    /** Aborting it cancels the stream (`ai:cancel`). */
    signal?: AbortSignal;
}
/** Where the connection is. */
export type GatewayState = 
/** Waiting for the first `ai:connected`, or for a lost one to come back. */
"connecting"
/** Connected; requests go out as they are made. */
 | "ready"
/** Connected again and resuming; requests wait for the answer. */
 | "resuming"
/** Closed by `close()`, or refused for good (see the `error` event). */
 | "closed";
/** A failure of the connection itself, or an `ai:error` not tied to a
 * stream the SDK handles. */
export interface GatewayFailure {
    code: ErrorCode;
    message: string;
    retryable: boolean;
    details?: Record<string, unknown> | null;
}
/** The gateway-level events `on()` takes. */
export interface GatewayEvents {
    state: (state: GatewayState) => void;
    /** Every `ai:connected`, the first and each reconnection's. */
    connected: (hello: Connected) => void;
    /** A reconnection took the streams over (`ai:reconnect:success`). */
    resumed: (r: ReconnectSuccess) => void;
    /** A reconnection could not take them over; they ended with `resume_failed`. */
    resume_failed: (f: ReconnectFailed) => void;
    backpressure: (b: Backpressure) => void;
    heartbeat: (h: HeartbeatAck) => void;
    error: (e: GatewayFailure) => void;
}
/** Counts of what the SDK did, for UIs and tests. */
export interface GatewayCounters {
    connections: number;
    resumes: number;
    resumeFailures: number;
    acksSent: number;
    /** Replayed events dropped because the stream already had them. */
    repeatsDropped: number;
}
/** Connect to the gateway at `url` (`http://host:3000`; `/ai` is added). */
export declare function connect(url: string, options?: ConnectOptions): Gateway;
/** `url` with the `/ai` namespace (kept when it is already there). */
export declare function namespaceUrl(url: string): string;
export declare class Gateway {
    #private;
    /** The first `ai:connected`; rejects (with a `GatewayFailure`) when the
     * handshake is refused for good, e.g. a missing or bad token. */
    readonly ready: Promise<Connected>;
    readonly socket: GatewaySocket;
    /** Drive an existing socket.io-client socket on `/ai` (`connect()` makes
     * one); it must not have received `ai:connected` yet. */
    constructor(socket: GatewaySocket);
    get state(): GatewayState;
    /** The current connection's `ai:connected` (limits, windows, version). */
    get hello(): Connected | undefined;
    /** The client id the server knows this client by now (a resume renames it). */
    get clientId(): string | undefined;
    /** The last `ai:backpressure` (undefined until the first). */
    get backpressure(): Backpressure | undefined;
    get counters(): GatewayCounters;
    /** Streams whose terminal event has not arrived yet. */
    get liveStreams(): Stream[];
    /** Listen to a gateway-level event; returns the function that stops it. */
    on<K extends keyof GatewayEvents>(name: K, listener: GatewayEvents[K]): () => void;
    /** Start a stream. It goes out as soon as the connection is ready (at
     * once when it is); read it with `for await`. */
    stream(request: StreamRequest, options?: StreamOptions): Stream;
    /** Cut the transport as a network failure would (the socket.io-client
     * reconnects by itself, and the SDK resumes): to show and test resume. */
    dropConnection(): void;
    /** Cancel the live streams, then close the connection for good. The
     * streams end with error `closed` (the server's answers cannot come). */
    close(): void;
}
