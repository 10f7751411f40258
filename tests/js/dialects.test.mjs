// The earlier designs' frontends, with the official socket.io-client, as
// their guides print them: `io(url)` on the default namespace, the JWT
// guide's `llm:*` events (emitted on `connect`, as that guide's test script
// does) and the chat designs' `chat_*` events. Only the URL is streamgate's.
// Started by tests/dialects.rs, which runs the fake upstreams:
//   GATEWAY_URL       auth off        AUTH_GATEWAY_URL + AUTH_TOKEN  auth on
//   FAKE_OLLAMA_URL   the fake Ollama (GET /_log: every request body it got)
// The fake Ollama answers by prompt: "guide…" → Hello, world! (4 tokens),
// "chat…" → Hi there. (3 tokens), "cancel…" → 1000 slow tokens, "fail…" →
// 2 tokens then an error line. `claude` is the fake Anthropic (Bonjour),
// `gemini` a fake OpenAI-compatible server (Hello, world ✓).
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { io as connect } from "socket.io-client";

const GATEWAY = process.env.GATEWAY_URL;
const AUTH_GATEWAY = process.env.AUTH_GATEWAY_URL;
const TOKEN = process.env.AUTH_TOKEN;
const FAKE_OLLAMA = process.env.FAKE_OLLAMA_URL;
if (!GATEWAY || !AUTH_GATEWAY) throw new Error("run through `cargo test --test dialects`");

// Every socket a test opened is closed after it, passed or failed, so a
// failure is reported instead of keeping the process alive.
const opened = [];
const io = (...args) => {
  const socket = connect(...args);
  opened.push(socket);
  return socket;
};
afterEach(() => opened.splice(0).forEach((s) => s.close()));

let ids = 0;
const fresh = (prefix) => `${prefix}_${Date.now()}_${++ids}`;

// Every event the socket hears, in order, until `until(name, payload)`.
function hear(socket, until) {
  const heard = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out; heard ${JSON.stringify(heard)}`)), 10_000);
    socket.onAny(function listener(name, payload) {
      heard.push([name, payload]);
      if (until(name, payload)) {
        clearTimeout(timer);
        socket.offAny(listener);
        resolve(heard);
      }
    });
  });
}

const names = (heard) => heard.map(([name]) => name);
const payloads = (heard, name) => heard.filter(([n]) => n === name).map(([, p]) => p);

// The fake Ollama's entry for `prompt`, once `pred` holds for it.
async function upstream(prompt, pred = () => true) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const log = await (await fetch(`${FAKE_OLLAMA}/_log`)).json();
    const entry = log.reverse().find((e) => e.prompt === prompt && pred(e));
    if (entry) return entry;
    if (Date.now() > deadline) throw new Error(`no upstream entry for ${prompt}: ${JSON.stringify(log)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function connectedTo(url, options) {
  const socket = io(url, { reconnection: false, ...options });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

// ---------------------------------------------------------------- llm:*

test("llm: the guide's test script, with auth.token, emitting on connect", async () => {
  const sessionId = fresh("session");
  const messages = [
    { role: "system", content: "You are terse." },
    { role: "user", content: "guide: say hello" },
  ];
  // As the guide prints it: connect, emit the moment we are connected,
  // print the tokens, report the full response and the count.
  const socket = io(AUTH_GATEWAY, { auth: { token: TOKEN }, reconnection: false });
  let printed = "";
  const heard = hear(socket, (name) => name === "llm:stream:done" || name === "llm:stream:error");
  const done = new Promise((resolve, reject) => {
    socket.on("connect", () => {
      socket.emit("llm:chat:stream", { sessionId, provider: "ollama", messages });
    });
    socket.on("llm:stream:token", (data) => { printed += data.token; });
    socket.on("llm:stream:done", (data) => resolve(data));
    socket.on("llm:stream:error", (data) => reject(new Error(data.error)));
    socket.on("connect_error", reject);
  });
  const result = await done;
  const all = await heard;
  socket.close();

  assert.equal(printed, "Hello, world!");
  assert.deepEqual(names(all), [
    "connected", "llm:stream:start",
    "llm:stream:token", "llm:stream:token", "llm:stream:token", "llm:stream:token",
    "llm:stream:done",
  ]);
  const [start] = payloads(all, "llm:stream:start");
  assert.deepEqual(Object.keys(start), ["sessionId", "provider", "model", "timestamp"]);
  assert.equal(start.sessionId, sessionId);
  assert.equal(start.provider, "ollama");
  assert.equal(start.model, "llama3.2");
  for (const t of payloads(all, "llm:stream:token")) {
    assert.deepEqual(Object.keys(t), ["sessionId", "token", "timestamp"]);
    assert.equal(t.sessionId, sessionId);
    assert.ok(Math.abs(t.timestamp - Date.now()) < 60_000, `timestamp in ms: ${t.timestamp}`);
  }
  assert.deepEqual(payloads(all, "llm:stream:token").map((t) => t.token), ["Hello", ", ", "wor", "ld!"]);
  assert.deepEqual(Object.keys(result), ["sessionId", "provider", "fullResponse", "tokenCount", "timestamp"]);
  assert.equal(result.sessionId, sessionId);
  assert.equal(result.provider, "ollama");
  assert.equal(result.fullResponse, "Hello, world!");
  assert.equal(result.tokenCount, 4);
  // The upstream got the frontend's messages as they are: no agent prompt.
  const served = await upstream("guide: say hello");
  assert.deepEqual(served.body.messages, messages);
});

test("llm: claude is the anthropic provider, gemini a configured one", async () => {
  const socket = await connectedTo(AUTH_GATEWAY, { auth: { token: TOKEN } });
  const ask = async (provider, extra) => {
    const sessionId = fresh(provider);
    const heard = hear(socket, (n, p) => p?.sessionId === sessionId
      && (n === "llm:stream:done" || n === "llm:stream:error"));
    socket.emit("llm:chat:stream", {
      sessionId, provider, ...extra,
      messages: [{ role: "system", content: "Answer in French." }, { role: "user", content: "Say hello" }],
    });
    return (await heard).filter(([, p]) => p?.sessionId === sessionId);
  };
  const claude = await ask("claude", { model: "claude-test", temperature: 0.2, maxTokens: 64 });
  assert.deepEqual(names(claude), ["llm:stream:start", "llm:stream:token", "llm:stream:token", "llm:stream:done"]);
  assert.equal(payloads(claude, "llm:stream:start")[0].provider, "anthropic");
  assert.equal(payloads(claude, "llm:stream:start")[0].model, "claude-test");
  const done = payloads(claude, "llm:stream:done")[0];
  assert.equal(done.provider, "anthropic");
  assert.equal(done.fullResponse, "Bonjour");
  assert.equal(done.tokenCount, 2);

  const gemini = await ask("gemini", {});
  const gdone = payloads(gemini, "llm:stream:done")[0];
  assert.equal(gdone.provider, "gemini");
  assert.equal(gdone.fullResponse, "Hello, world ✓");
  assert.equal(payloads(gemini, "llm:stream:token").map((t) => t.token).join(""), "Hello, world ✓");
  socket.close();
});

test("llm: an unknown provider is 'Provider not found'", async () => {
  const socket = await connectedTo(AUTH_GATEWAY, { auth: { token: TOKEN } });
  for (const provider of ["deepseek", "nonesuch"]) {
    const sessionId = fresh("missing");
    const heard = hear(socket, (n) => n === "llm:stream:error");
    socket.emit("llm:chat:stream", { sessionId, provider, messages: [{ role: "user", content: "hi" }] });
    const all = await heard;
    assert.deepEqual(names(all), ["llm:stream:error"], "no start for a refused stream");
    const [error] = payloads(all, "llm:stream:error");
    assert.deepEqual(Object.keys(error), ["sessionId", "error", "timestamp"]);
    assert.equal(error.sessionId, sessionId);
    assert.equal(error.error, `Provider not found: ${provider}`);
  }
  socket.close();
});

test("llm: validation errors name the field", async () => {
  const socket = await connectedTo(AUTH_GATEWAY, { auth: { token: TOKEN } });
  const cases = [
    [{ provider: "ollama", messages: [{ role: "assistant", content: "x" }] },
      "messages must end with a user message (the prompt)"],
    [{ provider: "ollama", messages: [{ role: "user", content: "hi" }], temperature: 5 },
      "temperature must be between 0.0 and 2.0"],
    [{ provider: "ollama", messages: [{ role: "user", content: "" }] },
      "messages[0].content must be a non-empty string"],
    [{ provider: "ollama", messages: [{ role: "robot", content: "hi" }] }, null],
  ];
  for (const [payload, expected] of cases) {
    const sessionId = fresh("bad");
    const heard = hear(socket, (n) => n === "llm:stream:error");
    socket.emit("llm:chat:stream", { sessionId, ...payload });
    const [[, error]] = await heard;
    assert.equal(error.sessionId, sessionId);
    if (expected) assert.equal(error.error, expected);
    else assert.match(error.error, /^messages\[0\]\.role must be valid: .*robot/);
  }
  const heard = hear(socket, (n) => n === "llm:stream:error");
  socket.emit("llm:chat:stream", { provider: "ollama", messages: [{ role: "user", content: "hi" }] });
  const [[, missing]] = await heard;
  assert.deepEqual(missing.sessionId, null);
  assert.equal(missing.error, "sessionId is required");
  socket.close();
});

test("llm: llm:stream:cancel stops the stream and closes the upstream", async () => {
  const socket = await connectedTo(AUTH_GATEWAY, { auth: { token: TOKEN } });
  const sessionId = fresh("cancel");
  socket.once("llm:stream:token", () => socket.emit("llm:stream:cancel", { sessionId }));
  const heard = hear(socket, (n) => n === "llm:stream:cancelled" || n === "llm:stream:done");
  socket.emit("llm:chat:stream", {
    sessionId, provider: "ollama", messages: [{ role: "user", content: "cancel: guide" }],
  });
  const all = await heard;
  const last = all[all.length - 1];
  assert.equal(last[0], "llm:stream:cancelled");
  assert.deepEqual(Object.keys(last[1]), ["sessionId", "timestamp"]);
  assert.equal(last[1].sessionId, sessionId);
  const served = await upstream("cancel: guide", (e) => e.closed_early);
  assert.ok(served.tokens_written < 1000, `upstream stopped early: ${served.tokens_written}`);
  socket.close();
});

test("llm: a handshake without the token is refused", async () => {
  await assert.rejects(connectedTo(AUTH_GATEWAY, {}), (e) => e.message.startsWith("unauthorized"));
});

// ---------------------------------------------------------------- chat_*

test("chat: connected greets with an ISO 8601 timestamp", async () => {
  const socket = io(GATEWAY, { reconnection: false });
  const greeting = await new Promise((resolve) => socket.once("connected", resolve));
  socket.close();
  assert.deepEqual(Object.keys(greeting), ["message", "timestamp"]);
  assert.equal(greeting.message, "Connected to streamgate");
  assert.match(greeting.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(greeting.timestamp) - Date.now()) < 60_000);
});

// One chat_message, as the chat designs send it; what came back.
async function chat(socket, message, session_id, name = "chat_message") {
  const end = name === "chat_message" ? "chat_complete" : "chat_done";
  const heard = hear(socket, (n) => n === end || n === "error");
  socket.emit(name, { message, session_id, workspace_id: "ws-1", rag_type: "none" });
  return heard;
}

test("chat: two chat_messages on a numeric session_id; the second upstream request carries the first", async () => {
  const socket = await connectedTo(GATEWAY);
  const sessionId = Date.now() % 1_000_000_000; // a number, as those frontends keep it
  const one = await chat(socket, "chat: first", sessionId);
  assert.deepEqual(names(one), ["chat_chunk", "chat_chunk", "chat_chunk", "chat_complete"]);
  for (const c of payloads(one, "chat_chunk")) {
    assert.deepEqual(Object.keys(c), ["chunk", "session_id"]);
    assert.equal(c.session_id, sessionId, "echoed as the number it was");
  }
  assert.equal(payloads(one, "chat_chunk").map((c) => c.chunk).join(""), "Hi there.");
  const [complete] = payloads(one, "chat_complete");
  assert.deepEqual(Object.keys(complete), ["session_id", "message_id", "full_response"]);
  assert.equal(complete.session_id, sessionId);
  assert.match(complete.message_id, /^s_[0-9a-f]+$/);
  assert.equal(complete.full_response, "Hi there.");

  const two = await chat(socket, "chat: second", sessionId);
  assert.equal(payloads(two, "chat_complete")[0].full_response, "Hi there.");
  assert.notEqual(payloads(two, "chat_complete")[0].message_id, complete.message_id);
  const served = await upstream("chat: second");
  assert.equal(served.body.messages[0].role, "system", "routed to an agent");
  assert.deepEqual(served.body.messages.slice(1), [
    { role: "user", content: "chat: first" },
    { role: "assistant", content: "Hi there." },
    { role: "user", content: "chat: second" },
  ]);
  // The gateway's session of that id (its decimal string) holds both turns.
  const session = await (await fetch(`${GATEWAY}/api/chat/sessions/${sessionId}`)).json();
  assert.equal(session.id, String(sessionId));
  assert.equal(session.turns, 2);
  socket.close();
});

test("chat: a frontend that emits before it is even connected is served", async () => {
  const socket = io(GATEWAY, { reconnection: false });
  const heard = hear(socket, (n) => n === "chat_complete" || n === "chat_error");
  socket.emit("chat_message", { message: "chat: eager" }); // buffered by the client, sent on connect
  const all = await heard;
  assert.deepEqual(names(all), ["connected", "chat_chunk", "chat_chunk", "chat_chunk", "chat_complete"]);
  assert.equal(payloads(all, "chat_complete")[0].session_id, null);
  socket.close();
});

test("chat: cancel_message closes the upstream; the message completes with what was said", async () => {
  const socket = await connectedTo(GATEWAY);
  let chunks = 0;
  socket.on("chat_chunk", () => { if (++chunks === 2) socket.emit("cancel_message"); });
  const all = await chat(socket, "cancel: plain", undefined);
  const text = payloads(all, "chat_chunk").map((c) => c.chunk).join("");
  assert.ok(text.startsWith("t0 t1 "), text);
  assert.equal(payloads(all, "chat_complete")[0].full_response, text);
  const served = await upstream("cancel: plain", (e) => e.closed_early);
  assert.ok(served.tokens_written < 1000);
  socket.close();
});

test("chat: one live stream per session (session busy); cancel_message with the session", async () => {
  const socket = await connectedTo(GATEWAY);
  const session_id = fresh("busy");
  const first = hear(socket, (n) => n === "chat_complete");
  socket.emit("chat_message", { message: "cancel: busy", session_id });
  await new Promise((r) => socket.once("chat_chunk", r));
  const busy = hear(socket, (n) => n === "error");
  socket.emit("chat_message", { message: "chat: too soon", session_id });
  const refused = (await busy).filter(([n]) => n === "chat_error" || n === "error");
  assert.deepEqual(refused, [
    ["chat_error", { error: "session busy", session_id }],
    ["error", { error: "session busy" }],
  ]);
  socket.emit("cancel_message", { session_id: "some-other-session" });
  socket.emit("cancel_message", { session_id });
  const all = await first;
  assert.equal(all[all.length - 1][0], "chat_complete");
  await upstream("cancel: busy", (e) => e.closed_early);
  socket.close();
});

test("chat: closing the connection cancels its streams at once (no reconnect window)", async () => {
  const socket = await connectedTo(GATEWAY);
  socket.emit("chat_message", { message: "cancel: closed" });
  await new Promise((r) => socket.once("chat_chunk", r));
  const closedAt = Date.now();
  socket.close();
  const served = await upstream("cancel: closed", (e) => e.closed_early);
  // The gateways run with a 10 s reconnect window, which these frontends
  // could never use: the upstream must be closed well before it.
  assert.ok(Date.now() - closedAt < 2_000, `closed after ${Date.now() - closedAt} ms`);
  assert.ok(served.tokens_written < 1000);
});

test("chat: an upstream failure is chat_error, then error", async () => {
  const socket = await connectedTo(GATEWAY);
  const all = await chat(socket, "fail: midway", 7);
  assert.deepEqual(names(all), ["chat_chunk", "chat_chunk", "chat_error", "error"]);
  assert.equal(payloads(all, "chat_chunk").map((c) => c.chunk).join(""), "Half an");
  assert.deepEqual(payloads(all, "chat_error")[0], { error: "provider ollama failed while streaming", session_id: 7 });
  assert.deepEqual(payloads(all, "error")[0], { error: "provider ollama failed while streaming" });
  socket.close();
});

test("chat: chat_stream answers with chat_token and chat_done", async () => {
  const socket = await connectedTo(GATEWAY);
  const all = await chat(socket, "chat: report", "report-1", "chat_stream");
  assert.deepEqual(names(all), ["chat_token", "chat_token", "chat_token", "chat_done"]);
  assert.deepEqual(payloads(all, "chat_token"), [
    { token: "Hi", count: 1 }, { token: " there", count: 2 }, { token: ".", count: 3 },
  ]);
  const [done] = payloads(all, "chat_done");
  assert.deepEqual(Object.keys(done), ["session_id", "tokens", "duration", "tokensPerSecond"]);
  assert.equal(done.session_id, "report-1");
  assert.equal(done.tokens, 3);
  assert.equal(typeof done.duration, "number");
  assert.equal(typeof done.tokensPerSecond, "number");
  socket.close();
});

test("chat: a malformed message names the field; an unknown event is an error", async () => {
  const socket = await connectedTo(GATEWAY);
  const heard = hear(socket, (n) => n === "error");
  socket.emit("chat_message", { message: "", session_id: 3 });
  assert.deepEqual((await heard).slice(-2), [
    ["chat_error", { error: "message must be a non-empty string", session_id: 3 }],
    ["error", { error: "message must be a non-empty string" }],
  ]);
  const unknown = hear(socket, (n) => n === "error");
  socket.emit("join_room", { room: "x" });
  const [[, error]] = await unknown;
  assert.match(error.error, /^"join_room" is not an event of this server; known: llm:chat:stream/);
  socket.close();
});

test("the streams of each dialect are counted in /stats and /metrics", async () => {
  const stats = async () => (await (await fetch(`${GATEWAY}/stats`)).json()).streams.byDialect;
  const before = await stats();
  const socket = await connectedTo(GATEWAY);
  await chat(socket, "chat: counted", undefined);
  await chat(socket, "chat: counted", undefined, "chat_stream");
  const done = hear(socket, (n) => n === "llm:stream:done");
  socket.emit("llm:chat:stream", {
    sessionId: fresh("counted"), provider: "ollama", messages: [{ role: "user", content: "guide: count" }],
  });
  await done;
  socket.close();
  const after = await stats();
  assert.deepEqual(
    Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]])),
    { llm: 1, chat: 1, chatStream: 1, llmRest: 0 },
  );
  const metrics = await (await fetch(`${GATEWAY}/metrics`)).text();
  assert.match(metrics, new RegExp(`^streamgate_streams_dialect_llm_total ${after.llm}$`, "m"));
  assert.match(metrics, new RegExp(`^streamgate_streams_dialect_chat_total ${after.chat}$`, "m"));
  assert.match(metrics, new RegExp(`^streamgate_streams_dialect_chat_stream_total ${after.chatStream}$`, "m"));
});
