/** What a client may ask for when it falls behind (handshake `auth`). */
export type BackpressurePolicy = "coalesce" | "slow" | "drop";
/** Every error code of the protocol's two tables. */
export type ProtocolErrorCode = "invalid_request" | "unauthorized" | "rate_limited" | "too_many_streams" | "duplicate_stream_id" | "unknown_stream" | "model_not_allowed" | "upstream_unavailable" | "upstream_error" | "timeout" | "internal" | "session_busy" | "unknown_session" | "forbidden" | "node_lost";
/** A text part or an image of a multi-part message (part 2). */
export type ContentPart = {
    type: "text";
    text: string;
} | {
    type: "image";
    mediaType: string;
    data: string;
} | {
    type: "image";
    url: string;
};
/** A tool call as a model made it and as it goes back in `messages`. */
export interface ToolCall {
    id: string;
    name: string;
    /** The complete JSON argument string, exactly as the model wrote it. */
    arguments: string;
}
/** One message of the conversation before the prompt. */
export interface ChatMessage {
    role: "system" | "user" | "assistant" | "tool";
    content: string | ContentPart[];
    toolCalls?: ToolCall[];
    toolCallId?: string;
    reasoning?: {
        text: string;
        signature?: string;
    } | {
        redacted: string;
    };
}
/** A tool the model may call (JSON Schema parameters). */
export interface ToolDefinition {
    name: string;
    description?: string;
    parameters?: Record<string, unknown>;
}
/** Editor context an IDE attaches to a prompt (free-form, at most 16 KiB). */
export interface AgentContext {
    activeFile?: string;
    projectType?: string;
    language?: string;
    selection?: string;
    [field: string]: unknown;
}
/** `ai:stream`: what a stream asks for. Only `prompt` is required (part 2
 * allows leaving it out after `tool` results). */
export interface StreamRequest {
    prompt?: string;
    messages?: ChatMessage[];
    model?: string;
    provider?: string;
    temperature?: number;
    maxTokens?: number;
    useOrchestrator?: boolean;
    agentContext?: AgentContext;
    /** 1..=64 of [A-Za-z0-9_.:-]; the SDK picks one when absent, so that it
     * can resume and cancel the stream before the server has answered. */
    streamId?: string;
    /** Part 2: the gateway keeps the conversation of this session. */
    sessionId?: string;
    tools?: ToolDefinition[];
    toolChoice?: "auto" | "none" | "required" | {
        name: string;
    };
    reasoning?: {
        effort?: "low" | "medium" | "high";
        budgetTokens?: number;
    };
}
/** One stream of an `ai:reconnect`: where the client's copy ends. */
export interface ResumeStream {
    streamId: string;
    lastTokenCount?: number;
}
export interface ReconnectRequest {
    previousClientId: string;
    resumeToken: string;
    streams?: ResumeStream[];
}
/** `ai:connected`, the first event of every connection. */
export interface Connected {
    clientId: string;
    resumeToken: string;
    maxConcurrentStreams: number;
    backpressureThreshold: number;
    backpressurePolicy: BackpressurePolicy;
    ackWindow: number;
    heartbeatIntervalMs: number;
    reconnectWindowMs: number;
    serverVersion: string;
    timestamp: number;
}
/** The Socket.IO acknowledgement of `ai:stream`. */
export type StreamAck = {
    ok: true;
    streamId: string;
} | {
    ok: false;
    error: {
        code: ProtocolErrorCode;
        message: string;
    };
};
export interface StreamStart {
    streamId: string;
    provider: string;
    model: string;
    agent: string | null;
    intent: string | null;
    /** Part 2; null without a session. */
    sessionId?: string | null;
    timestamp: number;
}
export interface Token {
    streamId: string;
    data: string;
    /** The stream's position after this event (it only grows). */
    tokenCount: number;
    agent: string | null;
    metadata?: {
        coalesced?: number;
        [key: string]: unknown;
    };
}
/** Part 2: a piece of the model's thinking. */
export interface Reasoning {
    streamId: string;
    data: string;
    tokenCount: number;
}
/** Part 2: a piece of the JSON argument string of the `index`-th call. */
export interface ToolCallDelta {
    streamId: string;
    index: number;
    id: string;
    name: string;
    argumentsDelta: string;
    tokenCount: number;
}
export interface StreamComplete {
    streamId: string;
    agent: string | null;
    intent: string | null;
    confidence: number | null;
}
export interface Usage {
    promptTokens?: number | null;
    completionTokens?: number | null;
    reasoningTokens?: number | null;
    cacheReadTokens?: number | null;
    cacheWriteTokens?: number | null;
    /** On a cancelled stream: the upstream never said, these are estimates. */
    estimated?: boolean;
}
export interface Done {
    streamId: string;
    totalTokens: number;
    duration: number;
    finishReason: string;
    usage: Usage | null;
    droppedTokens: number;
    /** Present when tokens were dropped: the whole text, to repair a copy. */
    fullResponse?: string;
    /** Part 2: each call whole, when the model stopped to call tools. */
    toolCalls?: ToolCall[];
    reasoning?: {
        signature?: string;
        redacted?: string;
    };
    sessionId?: string | null;
    turn?: number;
}
export type CancelReason = "client" | "timeout" | "disconnect" | "shutdown" | "client_too_slow";
export interface StreamCancelled {
    streamId: string;
    reason: CancelReason;
    tokenCount: number;
    usage?: Usage;
}
export interface StreamErrorEvent {
    streamId: string;
    code: ProtocolErrorCode;
    error: string;
    retryable: boolean;
}
/** `ai:error`: anything not tied to a live stream. */
export interface ErrorEvent {
    code: ProtocolErrorCode;
    error: string;
    details: Record<string, unknown> | null;
}
export interface Backpressure {
    state: "engaged" | "relieved";
    message: string;
    queueSize: number;
    threshold: number;
    policy: BackpressurePolicy;
    droppedTokens: number;
}
export interface HeartbeatAck {
    activeStreams: number;
    queueSize: number;
    timestamp: number;
}
export interface ReconnectSuccess {
    previousClientId: string;
    newClientId: string;
    resumeToken: string;
    streams: {
        streamId: string;
        state: string;
        tokenCount: number;
    }[];
}
export interface ReconnectFailed {
    previousClientId: string;
    reason: "unknown" | "forbidden";
}
/** Every event the server emits on `/ai`, by name (for socket.io-client's
 * typed `Socket`). */
export interface ServerToClientEvents {
    "ai:connected": (e: Connected) => void;
    "ai:stream:start": (e: StreamStart) => void;
    "ai:token": (e: Token) => void;
    "ai:reasoning": (e: Reasoning) => void;
    "ai:tool_call": (e: ToolCallDelta) => void;
    "ai:stream:complete": (e: StreamComplete) => void;
    "ai:done": (e: Done) => void;
    "ai:stream:cancelled": (e: StreamCancelled) => void;
    "ai:stream:error": (e: StreamErrorEvent) => void;
    "ai:error": (e: ErrorEvent) => void;
    "ai:backpressure": (e: Backpressure) => void;
    "ai:heartbeat:ack": (e: HeartbeatAck) => void;
    "ai:reconnect:success": (e: ReconnectSuccess) => void;
    "ai:reconnect:failed": (e: ReconnectFailed) => void;
}
/** Every event a client emits on `/ai`, by name. */
export interface ClientToServerEvents {
    "ai:stream": (req: StreamRequest, ack: (a: StreamAck) => void) => void;
    "ai:cancel": (req: {
        streamId: string;
    }) => void;
    "ai:ack": (req: {
        streamId: string;
        tokenCount: number;
    }) => void;
    "ai:heartbeat": (req: Record<string, never>) => void;
    "ai:reconnect": (req: ReconnectRequest) => void;
}
export interface SessionSummary {
    id: string;
    createdAt: number;
    updatedAt: number;
    turns: number;
    messages: number;
}
export interface SessionMessage {
    role: "system" | "user" | "assistant" | "tool";
    content: string | ContentPart[];
    toolCalls?: ToolCall[];
    toolCallId?: string;
    status?: "complete" | "cancelled" | "error";
    timestamp: number;
}
export interface Session {
    id: string;
    createdAt: number;
    updatedAt: number;
    turns: number;
    messages: SessionMessage[];
}
