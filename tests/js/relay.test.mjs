// End-to-end tests of the /ai namespace with the official socket.io-client,
// as a browser or Node frontend uses it (default transports: long-polling,
// upgraded to WebSocket). Started by tests/js_client.rs, which runs the
// gateway and a fake Ollama and passes their URLs in GATEWAY_URL and
// FAKE_OLLAMA_URL.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const GATEWAY = process.env.GATEWAY_URL;
const FAKE = process.env.FAKE_OLLAMA_URL;
if (!GATEWAY || !FAKE) throw new Error("run through `cargo test --test js_client`");

function connect(opts = {}) {
  const socket = io(`${GATEWAY}/ai`, { reconnection: false, ...opts });
  const events = [];
  socket.onAny((name, payload) => events.push([name, payload]));
  const connected = new Promise((resolve, reject) => {
    socket.once("ai:connected", resolve);
    socket.once("connect_error", reject);
  });
  return { socket, events, connected };
}

const TERMINAL = new Set(["ai:done", "ai:stream:cancelled", "ai:stream:error"]);

function waitFor(events, pred, ms = 10000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      const hit = events.find(pred);
      if (hit) return resolve(hit);
      if (Date.now() - started > ms) return reject(new Error(`timeout; events: ${JSON.stringify(events)}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

// The protocol's order for one stream: start, tokens (tokenCount growing by
// one per upstream token), one terminal group, nothing after.
function checkOrder(events, id) {
  const mine = events.filter(([, p]) => p && p.streamId === id);
  assert.equal(mine[0][0], "ai:stream:start", `${id} starts with ai:stream:start`);
  let i = 1, count = 0, text = "";
  while (i < mine.length && mine[i][0] === "ai:token") {
    assert.ok(mine[i][1].tokenCount > count, "tokenCount grows");
    count = mine[i][1].tokenCount;
    text += mine[i][1].data;
    i++;
  }
  const rest = mine.slice(i).map(([n]) => n);
  const ok = JSON.stringify(rest) === JSON.stringify(["ai:stream:complete", "ai:done"]) ||
    JSON.stringify(rest) === JSON.stringify(["ai:stream:cancelled"]) ||
    JSON.stringify(rest) === JSON.stringify(["ai:stream:error"]);
  assert.ok(ok, `${id}: bad terminal sequence ${JSON.stringify(rest)}`);
  return { text, terminal: mine[mine.length - 1], start: mine[0][1] };
}

const expected = (n) => Array.from({ length: n }, (_, i) => `t${i} `).join("");

test("three concurrent streams, one cancelled, upstream closed", async () => {
  const { socket, events, connected } = connect();
  const hello = await connected;
  assert.match(hello.clientId, /^c_/);
  assert.equal(typeof hello.resumeToken, "string");
  assert.equal(hello.maxConcurrentStreams, 10);

  const acks = await Promise.all([
    socket.emitWithAck("ai:stream", { prompt: "short", streamId: "one" }),
    socket.emitWithAck("ai:stream", { prompt: "long", streamId: "two" }),
    socket.emitWithAck("ai:stream", { prompt: "medium" }),
  ]);
  assert.deepEqual(acks[0], { ok: true, streamId: "one" });
  assert.deepEqual(acks[1], { ok: true, streamId: "two" });
  assert.equal(acks[2].ok, true);
  const third = acks[2].streamId;
  assert.match(third, /^s_/);

  await waitFor(events, ([n, p]) => n === "ai:token" && p.streamId === "two" && p.tokenCount >= 5);
  socket.emit("ai:cancel", { streamId: "two" });
  for (const id of ["one", "two", third]) {
    await waitFor(events, ([n, p]) => TERMINAL.has(n) && p.streamId === id);
  }
  const one = checkOrder(events, "one");
  assert.equal(one.text, expected(10));
  assert.equal(one.terminal[0], "ai:done");
  assert.equal(one.terminal[1].totalTokens, 10);
  assert.equal(one.start.provider, "ollama");
  const m = checkOrder(events, third);
  assert.equal(m.text, expected(40));
  const two = checkOrder(events, "two");
  assert.equal(two.terminal[0], "ai:stream:cancelled");
  assert.equal(two.terminal[1].reason, "client");
  assert.ok(two.terminal[1].tokenCount >= 5);
  assert.equal(two.text, expected(two.terminal[1].tokenCount));

  // The fake Ollama saw the cancelled stream's connection closed early.
  let log = [];
  for (let i = 0; i < 100; i++) {
    log = await (await fetch(`${FAKE}/_log`)).json();
    if (log.some((e) => e.prompt === "long" && e.closed_early)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const long = log.find((e) => e.prompt === "long");
  assert.ok(long.closed_early, `upstream not closed: ${JSON.stringify(log)}`);
  assert.ok(long.tokens_written < 300);
  assert.ok(log.find((e) => e.prompt === "short").finished);
  socket.close();
});

test("validation errors name the field, over the ack and ai:error", async () => {
  const { socket, events, connected } = connect({ transports: ["websocket"] });
  await connected;
  const ack = await socket.emitWithAck("ai:stream", { prompt: "x", temperature: 7 });
  assert.equal(ack.ok, false);
  assert.equal(ack.error.code, "invalid_request");
  assert.match(ack.error.message, /temperature/);
  const [, err] = await waitFor(events, ([n]) => n === "ai:error");
  assert.equal(err.details.field, "temperature");
  socket.emit("ai:cancel", { streamId: "ghost" });
  const [, unknown] = await waitFor(events, ([n, p]) => n === "ai:error" && p.code === "unknown_stream");
  assert.match(unknown.error, /ghost/);
  socket.emit("ai:heartbeat", {});
  const [, hb] = await waitFor(events, ([n]) => n === "ai:heartbeat:ack");
  assert.equal(hb.activeStreams, 0);
  assert.ok(socket.connected);
  socket.close();
});
