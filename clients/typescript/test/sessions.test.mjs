// The sessions helper against a small local HTTP server that answers as
// PROTOCOL part 2 says (the gateway has no sessions endpoints yet): the
// Bearer header, most-recent-first lists, 404 as "unknown" or "no such
// endpoint", 409 session_busy as a typed error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { GatewayHttpError, sessions } from "../dist/index.js";

/** Serve `handler(req) -> [status, body?]`; returns the base URL and a log. */
async function serve(handler) {
  const seen = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, auth: req.headers.authorization });
    const [status, body] = handler(req);
    res.writeHead(status, body === undefined ? {} : { "content-type": "application/json" });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, seen, close: () => new Promise((r) => server.close(r)) };
}

const summary = { id: "s1", createdAt: 1, updatedAt: 2, turns: 1, messages: 2 };
const full = {
  ...summary,
  messages: [
    { role: "user", content: "hi", timestamp: 1 },
    { role: "assistant", content: "hello", status: "complete", toolCalls: [{ id: "c", name: "f", arguments: "{}" }], timestamp: 2 },
  ],
};

test("list, get and delete with the token; 404 and 409 mapped to values and typed errors", async () => {
  const srv = await serve((req) => {
    if (req.headers.authorization !== "Bearer jwt-1") return [401, { error: { code: "unauthorized", message: "no token" } }];
    if (req.method === "GET" && req.url === "/api/chat/sessions") return [200, { sessions: [summary] }];
    if (req.method === "GET" && req.url === "/api/chat/sessions/s1") return [200, full];
    if (req.method === "DELETE" && req.url === "/api/chat/sessions/s1") return [204];
    if (req.method === "DELETE" && req.url === "/api/chat/sessions/busy") return [409, { error: { code: "session_busy", message: "a stream is live" } }];
    return [404, { error: { code: "unknown_session", message: "no such session" } }];
  });
  try {
    const api = sessions(`${srv.url}/ai`, { token: () => "jwt-1" });
    assert.deepEqual(await api.list(), [summary]);
    assert.deepEqual(await api.get("s1"), full);
    assert.equal(await api.get("nope"), null);
    assert.equal(await api.delete("s1"), true);
    assert.equal(await api.delete("nope"), false);
    await assert.rejects(api.delete("busy"), (e) => e instanceof GatewayHttpError && e.status === 409 && e.code === "session_busy");
    assert.ok(srv.seen.every((r) => r.auth === "Bearer jwt-1"));
    await assert.rejects(sessions(srv.url).list(), (e) => e.status === 401 && e.code === "unauthorized");
    assert.equal(srv.seen.at(-1).auth, undefined, "no token, no header");
  } finally {
    await srv.close();
  }
});

test("a gateway without the endpoints: the list is null, not an error", async () => {
  const srv = await serve(() => [404]);
  try {
    assert.equal(await sessions(srv.url).list(), null);
  } finally {
    await srv.close();
  }
});
