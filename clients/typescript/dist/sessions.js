// The gateway's conversation history over HTTP (PROTOCOL part 2, "Sessions"):
// list, read and delete the caller's sessions, with the same JWT as the
// socket (`Authorization: Bearer`). A gateway without the endpoints answers
// the list with 404; that is `null` here, so a UI can say "no sessions"
// rather than fail.
/** An HTTP answer that is neither success nor "not found". */
export class GatewayHttpError extends Error {
    status;
    code;
    constructor(status, code, message) {
        super(message);
        this.name = "GatewayHttpError";
        this.status = status;
        this.code = code;
    }
}
/** The sessions endpoints of the gateway at `baseUrl` (`http://host:3000`). */
export function sessions(baseUrl, options = {}) {
    const root = baseUrl.replace(/\/+$/, "").replace(/\/ai$/, "");
    const request = async (method, path) => {
        const token = typeof options.token === "function" ? await options.token() : options.token;
        const headers = { accept: "application/json" };
        if (token)
            headers.authorization = `Bearer ${token}`;
        return fetch(`${root}${path}`, { method, headers });
    };
    const path = (id) => `/api/chat/sessions/${encodeURIComponent(id)}`;
    return {
        async list() {
            const r = await request("GET", "/api/chat/sessions");
            if (r.status === 404)
                return notFound(r, null);
            const body = (await readJson(r));
            return body.sessions ?? [];
        },
        async get(id) {
            const r = await request("GET", path(id));
            if (r.status === 404)
                return notFound(r, null);
            return (await readJson(r));
        },
        async delete(id) {
            const r = await request("DELETE", path(id));
            if (r.status === 404)
                return notFound(r, false);
            if (r.status === 204)
                return true;
            await readJson(r);
            return true;
        },
    };
}
/** `value`, once the 404's body is read (a body left unread is an
 * aborted request to a browser, and a connection not reused to Node). */
async function notFound(r, value) {
    await r.text();
    return value;
}
/** The body of a successful answer, or a `GatewayHttpError` naming the
 * protocol's code when the gateway gave one. */
async function readJson(r) {
    const text = await r.text();
    let body = null;
    try {
        body = text ? JSON.parse(text) : null;
    }
    catch {
        body = null;
    }
    if (r.ok)
        return body;
    const error = body?.error;
    throw new GatewayHttpError(r.status, error?.code ?? "http_error", error?.message ?? `HTTP ${r.status}`);
}
