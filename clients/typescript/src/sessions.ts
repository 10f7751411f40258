// The gateway's conversation history over HTTP (PROTOCOL part 2, "Sessions"):
// list, read and delete the caller's sessions, with the same JWT as the
// socket (`Authorization: Bearer`). A gateway without the endpoints answers
// the list with 404; that is `null` here, so a UI can say "no sessions"
// rather than fail.

import type { ProtocolErrorCode, Session, SessionSummary } from "./protocol.js";
import type { TokenSource } from "./gateway.js";

export interface HttpOptions {
  /** Sent as `Authorization: Bearer …` when set. */
  token?: TokenSource;
}

/** An HTTP answer that is neither success nor "not found". */
export class GatewayHttpError extends Error {
  readonly status: number;
  readonly code: ProtocolErrorCode | "http_error";

  constructor(status: number, code: ProtocolErrorCode | "http_error", message: string) {
    super(message);
    this.name = "GatewayHttpError";
    this.status = status;
    this.code = code;
  }
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
export function sessions(baseUrl: string, options: HttpOptions = {}): SessionsApi {
  const root = baseUrl.replace(/\/+$/, "").replace(/\/ai$/, "");
  const request = async (method: string, path: string): Promise<Response> => {
    const token = typeof options.token === "function" ? await options.token() : options.token;
    const headers: Record<string, string> = { accept: "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    return fetch(`${root}${path}`, { method, headers });
  };
  const path = (id: string) => `/api/chat/sessions/${encodeURIComponent(id)}`;
  return {
    async list() {
      const r = await request("GET", "/api/chat/sessions");
      if (r.status === 404) return notFound(r, null);
      const body = (await readJson(r)) as { sessions?: SessionSummary[] };
      return body.sessions ?? [];
    },
    async get(id) {
      const r = await request("GET", path(id));
      if (r.status === 404) return notFound(r, null);
      return (await readJson(r)) as Session;
    },
    async delete(id) {
      const r = await request("DELETE", path(id));
      if (r.status === 404) return notFound(r, false);
      if (r.status === 204) return true;
      await readJson(r);
      return true;
    },
  };
}

/** `value`, once the 404's body is read (a body left unread is an
 * aborted request to a browser, and a connection not reused to Node). */
async function notFound<T>(r: Response, value: T): Promise<T> {
  await r.text();
  return value;
}

/** The body of a successful answer, or a `GatewayHttpError` naming the
 * protocol's code when the gateway gave one. */
async function readJson(r: Response): Promise<unknown> {
  const text = await r.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (r.ok) return body;
  const error = (body as { error?: { code?: ProtocolErrorCode; message?: string } } | null)?.error;
  throw new GatewayHttpError(r.status, error?.code ?? "http_error", error?.message ?? `HTTP ${r.status}`);
}
