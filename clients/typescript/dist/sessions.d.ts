import type { ProtocolErrorCode, Session, SessionSummary } from "./protocol.js";
import type { TokenSource } from "./gateway.js";
export interface HttpOptions {
    /** Sent as `Authorization: Bearer …` when set. */
    token?: TokenSource;
}
/** An HTTP answer that is neither success nor "not found". */
export declare class GatewayHttpError extends Error {
    readonly status: number;
    readonly code: ProtocolErrorCode | "http_error";
    constructor(status: number, code: ProtocolErrorCode | "http_error", message: string);
}
export interface SessionsApi {
    /** The caller's sessions, most recent first; `null` when this gateway
     * has no sessions endpoint. */
    list(): Promise<SessionSummary[] | null>;
    /** One session with its messages; `null` when unknown (or another user's). */
    get(id: string): Promise<Session | null>;
    /** Delete it; false when unknown. A live stream on it: `session_busy`. */
    delete(id: string): Promise<boolean>;
}
/** The sessions endpoints of the gateway at `baseUrl` (`http://host:3000`). */
export declare function sessions(baseUrl: string, options?: HttpOptions): SessionsApi;
