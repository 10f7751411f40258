// The SDK without a server: positions, tool-call assembly, acks as the
// caller reads, and the resume bookkeeping, driven by synthetic events
// through a fake socket (test/fake-socket.mjs). This is where the part-2
// events the gateway does not send yet (`ai:reasoning`, `ai:tool_call`,
// `ai:done.toolCalls`) are tested.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Assembly, Gateway, PositionGate } from "../dist/index.js";
import { FakeSocket, settle } from "./fake-socket.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A gateway on a fake socket, connected as client `c1`. */
async function connected() {
  const socket = new FakeSocket();
  const gw = new Gateway(socket);
  socket.up("c1");
  await gw.ready;
  return { socket, gw };
}

const start = (streamId) => ({ streamId, provider: "ollama", model: "m", agent: "coder", intent: "generate", timestamp: 1 });
const tok = (streamId, tokenCount, data = `t${tokenCount} `) => ({ streamId, data, tokenCount, agent: "coder" });
const done = (streamId, extra = {}) => ({
  streamId, totalTokens: 0, duration: 5, finishReason: "stop", usage: null, droppedTokens: 0, ...extra,
});

/** Read `n` events (or all, n = Infinity) of an iterator. */
async function read(it, n = Infinity) {
  const out = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

test("PositionGate: positions only grow; a repeat is refused", () => {
  const g = new PositionGate();
  assert.equal(g.admit(1), true);
  assert.equal(g.admit(5), true); // a coalesced event moves several at once
  assert.equal(g.admit(5), false);
  assert.equal(g.admit(3), false);
  assert.equal(g.admit(Number.NaN), false);
  assert.equal(g.last, 5);
});

test("Assembly: tool calls from interleaved and merged pieces, text repaired by fullResponse", () => {
  const a = new Assembly();
  const piece = (index, id, name, argumentsDelta, tokenCount) => ({ streamId: "s", index, id, name, argumentsDelta, tokenCount });
  a.token(tok("s", 1, "Let me look. "));
  a.toolCallDelta(piece(0, "call_a", "read_file", '{"pa', 2));
  a.toolCallDelta(piece(1, "call_b", "grep", '{"pattern":', 3));
  a.toolCallDelta(piece(0, "call_a", "read_file", 'th":"src/a.rs"}', 5)); // two pieces merged
  a.toolCallDelta(piece(1, "call_b", "grep", '"fn main"}', 6));
  assert.deepEqual(a.toolCalls, [
    { id: "call_a", name: "read_file", arguments: '{"path":"src/a.rs"}' },
    { id: "call_b", name: "grep", arguments: '{"pattern":"fn main"}' },
  ]);
  assert.deepEqual(JSON.parse(a.toolCalls[0].arguments), { path: "src/a.rs" });
  assert.equal(a.position, 6);
  // The server's whole calls win, and fullResponse repairs the text.
  const whole = [{ id: "call_a", name: "read_file", arguments: '{"path":"src/a.rs"}' }];
  a.finish(done("s", { toolCalls: whole, fullResponse: "Let me look. (all of it)" }));
  assert.deepEqual(a.toolCalls, whole);
  assert.equal(a.text, "Let me look. (all of it)");
});

test("one stream: start, reasoning, text and tool calls in order, one terminal, a typed result", async () => {
  const { socket, gw } = await connected();
  const tools = [{ name: "read_file", parameters: { type: "object" } }];
  const s = gw.stream({ prompt: "fix it", tools, sessionId: "sess-1" });
  const [req] = socket.take("ai:stream");
  assert.equal(req.prompt, "fix it");
  assert.deepEqual(req.tools, tools);
  assert.equal(req.sessionId, "sess-1");
  assert.match(req.streamId, /^sdk_[0-9a-f]{16}$/);
  socket.answer({ ok: true, streamId: s.id });
  const id = s.id;
  socket.fire("ai:stream:start", { ...start(id), sessionId: "sess-1" });
  socket.fire("ai:reasoning", { streamId: id, data: "The bug is ", tokenCount: 1 });
  socket.fire("ai:reasoning", { streamId: id, data: "in a.rs.", tokenCount: 2 });
  socket.fire("ai:token", tok(id, 3, "Reading it: "));
  socket.fire("ai:tool_call", { streamId: id, index: 0, id: "call_1", name: "read_file", argumentsDelta: '{"path":', tokenCount: 4 });
  socket.fire("ai:tool_call", { streamId: id, index: 0, id: "call_1", name: "read_file", argumentsDelta: '"a.rs"}', tokenCount: 5 });
  socket.fire("ai:stream:complete", { streamId: id, agent: "debugger", intent: "fix", confidence: 0.8 });
  const calls = [{ id: "call_1", name: "read_file", arguments: '{"path":"a.rs"}' }];
  socket.fire("ai:done", done(id, { totalTokens: 5, finishReason: "tool_calls", toolCalls: calls, sessionId: "sess-1", turn: 1 }));
  socket.fire("ai:token", tok(id, 6)); // nothing follows a terminal event

  const events = [];
  for await (const ev of s) events.push(ev);
  assert.deepEqual(events.map((e) => e.type), ["start", "reasoning", "reasoning", "token", "tool_call", "tool_call", "done"]);
  assert.equal(s.text, "Reading it: ");
  assert.equal(s.reasoning, "The bug is in a.rs.");
  assert.deepEqual(s.toolCalls, calls);
  const r = await s.done;
  assert.equal(r.status, "complete");
  assert.equal(r.done.finishReason, "tool_calls");
  assert.equal(r.done.intent, "fix"); // ai:stream:complete folded into done
  assert.equal(r.done.turn, 1);
  assert.equal(r.start.sessionId, "sess-1");
  assert.equal(r.position, 5);
  assert.deepEqual(r.toolCalls, calls);
  assert.equal(gw.liveStreams.length, 0);
});

test("acks follow what the caller read, not what arrived (every 32 tokens, or within 100 ms)", async () => {
  const { socket, gw } = await connected();
  const s = gw.stream({ prompt: "p", streamId: "a" });
  const it = s[Symbol.asyncIterator](); // the caller's loop, before anything arrives
  assert.deepEqual(socket.sent.slice(-2).map(([n]) => n), ["ai:ack", "ai:stream"]);
  assert.deepEqual(socket.take("ai:ack"), [{ streamId: "a", tokenCount: 0 }], "a credit client before the first token");
  socket.answer({ ok: true, streamId: "a" });
  socket.fire("ai:stream:start", start("a"));
  for (let n = 1; n <= 100; n++) socket.fire("ai:token", tok("a", n));
  await sleep(150);
  assert.deepEqual(socket.take("ai:ack"), [], "nothing read, nothing acknowledged");
  assert.equal(s.received, 100);
  assert.equal(s.buffered, 101);

  await read(it, 1 + 40); // start, then tokens 1..40
  assert.deepEqual(socket.take("ai:ack"), [{ streamId: "a", tokenCount: 32 }], "at 32 tokens read");
  await sleep(150);
  assert.deepEqual(socket.take("ai:ack"), [{ streamId: "a", tokenCount: 40 }], "the rest within 100 ms");
  assert.equal(s.position, 40);
  await read(it, 60);
  await sleep(150);
  assert.deepEqual(socket.take("ai:ack").map((a) => a.tokenCount), [72, 100]);
  socket.fire("ai:stream:complete", { streamId: "a", agent: null, intent: null, confidence: null });
  socket.fire("ai:done", done("a", { totalTokens: 100 }));
  await read(it);
  assert.equal((await s.done).text, Array.from({ length: 100 }, (_, i) => `t${i + 1} `).join(""));
});

test("a stream nobody iterates is read by the SDK: acks on arrival, done on its own, a late loop still sees it all", async () => {
  const { socket, gw } = await connected();
  const s = gw.stream({ prompt: "p", streamId: "a" });
  socket.answer({ ok: true, streamId: "a" });
  socket.take("ai:ack");
  socket.fire("ai:stream:start", start("a"));
  for (let n = 1; n <= 40; n++) socket.fire("ai:token", tok("a", n));
  assert.deepEqual(socket.take("ai:ack"), [{ streamId: "a", tokenCount: 32 }], "acks on arrival");
  socket.fire("ai:stream:complete", { streamId: "a", agent: null, intent: null, confidence: null });
  socket.fire("ai:done", done("a", { totalTokens: 40 }));
  const r = await s.done; // no loop at all
  assert.equal(r.status, "complete");
  assert.equal(r.position, 40);
  const late = [];
  for await (const ev of s) late.push(ev.type);
  assert.equal(late.length, 1 + 40 + 1, "start, every token, done");
  assert.throws(() => s[Symbol.asyncIterator](), /already being read/);
});

test("resume: ai:reconnect goes first with each stream's last position; what waited goes after; repeats are dropped", async () => {
  const { socket, gw } = await connected();
  const a = gw.stream({ prompt: "a", streamId: "a" });
  const ita = a[Symbol.asyncIterator]();
  const b = gw.stream({ prompt: "b", streamId: "b" });
  socket.answer({ ok: true, streamId: "a" });
  socket.answer({ ok: true, streamId: "b" });
  socket.take("ai:stream");
  socket.fire("ai:stream:start", start("a"));
  for (let n = 1; n <= 5; n++) socket.fire("ai:token", tok("a", n));
  socket.fire("ai:stream:start", start("b"));
  socket.fire("ai:reasoning", { streamId: "b", data: "hmm ", tokenCount: 3 });
  socket.fire("ai:tool_call", { streamId: "b", index: 0, id: "c", name: "f", argumentsDelta: "{}", tokenCount: 7 });
  await read(ita, 3); // the caller is behind what arrived
  assert.equal(a.position, 2);
  assert.equal(a.received, 5);

  socket.cut();
  assert.equal(gw.state, "connecting");
  const c = gw.stream({ prompt: "c", streamId: "c" });
  a.cancel(); // while away: goes out once resumed
  socket.sent.length = 0; // forget what the first connection carried
  socket.up("c2");
  assert.equal(gw.state, "resuming");
  assert.deepEqual(socket.sent.map(([n]) => n), ["ai:reconnect"], "the resume is the first request");
  assert.deepEqual(socket.take("ai:reconnect"), [
    { previousClientId: "c1", resumeToken: "rt-c1", streams: [{ streamId: "a", lastTokenCount: 5 }, { streamId: "b", lastTokenCount: 7 }] },
  ]);
  socket.fire("ai:reconnect:success", {
    previousClientId: "c1", newClientId: "c2", resumeToken: "rt-2",
    streams: [{ streamId: "a", state: "streaming", tokenCount: 6 }, { streamId: "b", state: "streaming", tokenCount: 7 }],
  });
  assert.equal(gw.state, "ready");
  assert.equal(gw.clientId, "c2");
  assert.deepEqual(socket.take("ai:stream").map((r) => r.streamId), ["c"], "what waited goes now");
  assert.deepEqual(socket.take("ai:cancel"), [{ streamId: "a" }]);
  // The server replays after position 5; an event that crossed the cut
  // twice is dropped.
  socket.fire("ai:token", tok("a", 5));
  socket.fire("ai:token", tok("a", 6));
  socket.fire("ai:stream:cancelled", { streamId: "a", reason: "client", tokenCount: 6 });
  const rest = await read(ita);
  assert.deepEqual(rest.map((e) => (e.type === "token" ? e.tokenCount : e.type)), [3, 4, 5, 6, "cancelled"]);
  assert.equal(a.text, "t1 t2 t3 t4 t5 t6 ");
  assert.equal(gw.counters.repeatsDropped, 1);
  assert.equal(gw.counters.resumes, 1);

  // The next resume names the renamed client and the new token.
  socket.cut();
  socket.up("c3");
  const [again] = socket.take("ai:reconnect");
  assert.equal(again.previousClientId, "c2");
  assert.equal(again.resumeToken, "rt-2");
  assert.deepEqual(again.streams.map((s) => s.streamId).sort(), ["b", "c"]);
  void b;
  void c;
});

test("a request cut before its answer: sent again when the resume knows nothing of it, kept when the server has it", async () => {
  const { socket, gw } = await connected();
  const a = gw.stream({ prompt: "a", streamId: "a" });
  const b = gw.stream({ prompt: "b", streamId: "b" });
  socket.take("ai:stream");
  socket.cut(); // both answers lost
  socket.up("c2");
  // Nothing of them arrived, not even the start: no position, so the
  // server would replay everything.
  assert.deepEqual(socket.take("ai:reconnect")[0].streams, [{ streamId: "a" }, { streamId: "b" }]);
  socket.fire("ai:reconnect:success", { previousClientId: "c1", newClientId: "c2", resumeToken: "r2", streams: [] });
  socket.fire("ai:error", { code: "unknown_stream", error: "x", details: { streamId: "a" } });
  socket.fire("ai:error", { code: "unknown_stream", error: "x", details: { streamId: "b" } });
  assert.deepEqual(socket.take("ai:stream").map((r) => r.streamId), ["a", "b"]);
  socket.answer({ ok: true, streamId: "a" }); // it had never arrived
  socket.answer({ ok: false, error: { code: "duplicate_stream_id", message: "live" } }); // it had, silently
  await settle();
  for (const id of ["a", "b"]) {
    socket.fire("ai:stream:start", start(id));
    socket.fire("ai:token", tok(id, 1));
    socket.fire("ai:stream:complete", { streamId: id, agent: null, intent: null, confidence: null });
    socket.fire("ai:done", done(id, { totalTokens: 1 }));
  }
  assert.equal((await a.collect()).status, "complete");
  assert.equal((await b.collect()).text, "t1 ");
});

test("resume refused: the carried streams end with resume_failed, the new connection serves what waited", async () => {
  const errors = [];
  const { socket, gw } = await connected();
  gw.on("resume_failed", (f) => errors.push(f.reason));
  const a = gw.stream({ prompt: "a", streamId: "a" });
  socket.answer({ ok: true, streamId: "a" });
  socket.fire("ai:stream:start", start("a"));
  socket.fire("ai:token", tok("a", 1));
  socket.cut();
  const c = gw.stream({ prompt: "c", streamId: "c" });
  socket.up("c2");
  socket.take("ai:stream");
  socket.fire("ai:reconnect:failed", { previousClientId: "c1", reason: "unknown" });
  const r = await a.collect();
  assert.equal(r.status, "error");
  assert.equal(r.error.code, "resume_failed");
  assert.equal(r.error.retryable, true);
  assert.equal(r.text, "t1 ", "what arrived is still the caller's");
  assert.deepEqual(errors, ["unknown"]);
  assert.equal(gw.clientId, "c2");
  assert.deepEqual(socket.take("ai:stream").map((q) => q.streamId), ["c"]);
  void c;
});

test("cancel: AbortSignal, before sending, and by breaking out of the loop", async () => {
  const { socket, gw } = await connected();
  const ctl = new AbortController();
  const s = gw.stream({ prompt: "p", streamId: "s" }, { signal: ctl.signal });
  socket.answer({ ok: true, streamId: "s" });
  ctl.abort();
  assert.deepEqual(socket.take("ai:cancel"), [{ streamId: "s" }]);
  socket.fire("ai:stream:cancelled", { streamId: "s", reason: "client", tokenCount: 0 });
  const r = await s.collect();
  assert.equal(r.status, "cancelled");
  assert.equal(r.cancelled.reason, "client");

  const pre = new AbortController();
  pre.abort();
  const never = gw.stream({ prompt: "p" }, { signal: pre.signal });
  assert.equal((await never.collect()).status, "cancelled");
  assert.deepEqual(socket.take("ai:stream").filter((q) => q.streamId === never.id), [], "nothing sent");

  const loop = gw.stream({ prompt: "p", streamId: "l" });
  const reading = (async () => {
    for await (const ev of loop) if (ev.type === "token") break;
  })();
  socket.answer({ ok: true, streamId: "l" });
  socket.fire("ai:stream:start", start("l"));
  for (let n = 1; n <= 3; n++) socket.fire("ai:token", tok("l", n));
  await reading;
  assert.deepEqual(socket.take("ai:cancel"), [{ streamId: "l" }]);
  await sleep(120);
  assert.deepEqual(socket.take("ai:ack").filter((a) => a.streamId === "l" && a.tokenCount > 0), [{ streamId: "l", tokenCount: 3 }], "what arrived counts as read");
  socket.fire("ai:stream:cancelled", { streamId: "l", reason: "client", tokenCount: 3 });
  assert.equal((await loop.done).status, "cancelled");
});

test("failures are typed values: a refused request, a stream error, a refused handshake", async () => {
  const { socket, gw } = await connected();
  const gwErrors = [];
  gw.on("error", (e) => gwErrors.push(e.code));
  const s = gw.stream({ prompt: "p", streamId: "s" });
  socket.answer({ ok: false, error: { code: "too_many_streams", message: "at most 10" } });
  socket.fire("ai:error", { code: "too_many_streams", error: "at most 10", details: { streamId: "s" } });
  const r = await s.collect();
  assert.deepEqual(r.error, { streamId: "s", code: "too_many_streams", message: "at most 10", retryable: true });
  assert.deepEqual(gwErrors, [], "the stream's own failure is not also a gateway error");

  const u = gw.stream({ prompt: "p", streamId: "u" });
  socket.answer({ ok: true, streamId: "u" });
  socket.fire("ai:stream:start", start("u"));
  socket.fire("ai:stream:error", { streamId: "u", code: "upstream_error", error: "provider ollama failed", retryable: true });
  const events = [];
  for await (const ev of u) events.push(ev);
  assert.deepEqual(events.at(-1), { type: "error", streamId: "u", code: "upstream_error", message: "provider ollama failed", retryable: true });

  const refused = new FakeSocket();
  const gw2 = new Gateway(refused);
  const waiting = gw2.stream({ prompt: "p" });
  refused.active = false; // socket.io-client gives up after a middleware refusal
  refused.fire("connect_error", new Error("unauthorized: token expired"));
  await assert.rejects(gw2.ready, (e) => e.code === "unauthorized" && /token expired/.test(e.message));
  const w = await waiting.collect();
  assert.equal(w.error.code, "unauthorized");
  assert.equal(w.error.retryable, false);
  assert.equal(gw2.state, "closed");
});

test("backpressure is surfaced: the gateway's state, its listeners, and every live stream's events", async () => {
  const { socket, gw } = await connected();
  const seen = [];
  gw.on("backpressure", (b) => seen.push(b.state));
  const s = gw.stream({ prompt: "p", streamId: "s" });
  socket.answer({ ok: true, streamId: "s" });
  socket.fire("ai:stream:start", start("s"));
  const bp = { state: "engaged", message: "behind", queueSize: 100, threshold: 100, policy: "coalesce", droppedTokens: 0 };
  socket.fire("ai:backpressure", bp);
  socket.fire("ai:backpressure", { ...bp, state: "relieved", queueSize: 10 });
  socket.fire("ai:stream:cancelled", { streamId: "s", reason: "shutdown", tokenCount: 0 });
  const types = [];
  for await (const ev of s) types.push(ev.type === "backpressure" ? ev.state : ev.type);
  assert.deepEqual(types, ["start", "engaged", "relieved", "cancelled"]);
  assert.deepEqual(seen, ["engaged", "relieved"]);
  assert.equal(gw.backpressure.state, "relieved");
});
