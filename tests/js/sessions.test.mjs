// Sessions with the official socket.io-client: a frontend holds a
// two-turn conversation by sending only { prompt, sessionId }; the fake
// Ollama (tests/js_client.rs) answers a "recall" prompt with the earlier
// messages it received, so the second answer shows that the upstream got
// the first turn. Then the conversation is read and deleted over HTTP.
// Started by tests/js_client.rs (GATEWAY_URL, FAKE_OLLAMA_URL).
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const GATEWAY = process.env.GATEWAY_URL;
if (!GATEWAY) throw new Error("run through `cargo test --test js_client`");

// One turn: the reply text, and the ai:stream:start and ai:done payloads.
async function ask(socket, prompt, sessionId) {
  const ack = await socket.emitWithAck("ai:stream", {
    prompt, sessionId, provider: "ollama", useOrchestrator: false,
  });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return new Promise((resolve, reject) => {
    let text = "", start = null;
    const mine = (p) => p.streamId === ack.streamId;
    const onStart = (p) => { if (mine(p)) start = p; };
    const onToken = (p) => { if (mine(p)) text += p.data; };
    const onError = (p) => { if (mine(p)) reject(new Error(`${p.code}: ${p.error}`)); };
    const onDone = (p) => {
      if (!mine(p)) return;
      socket.off("ai:stream:start", onStart).off("ai:token", onToken)
        .off("ai:done", onDone).off("ai:stream:error", onError);
      resolve({ text, start, done: p });
    };
    socket.on("ai:stream:start", onStart).on("ai:token", onToken)
      .on("ai:done", onDone).on("ai:stream:error", onError);
  });
}

test("two turns on one session: the second upstream request carries the first", async () => {
  const socket = io(`${GATEWAY}/ai`, { reconnection: false });
  await new Promise((resolve, reject) => {
    socket.once("ai:connected", resolve);
    socket.once("connect_error", reject);
  });
  const sessionId = `js-${Date.now()}`;

  const one = await ask(socket, "recall one", sessionId);
  assert.equal(one.text, "heard: nothing");
  assert.equal(one.start.sessionId, sessionId);
  assert.equal(one.done.sessionId, sessionId);
  assert.equal(one.done.turn, 1);

  const two = await ask(socket, "recall two", sessionId);
  assert.equal(two.text, "heard: user=recall one; assistant=heard: nothing");
  assert.equal(two.done.turn, 2);

  const read = await fetch(`${GATEWAY}/api/chat/sessions/${sessionId}`);
  assert.equal(read.status, 200);
  const session = await read.json();
  assert.equal(session.id, sessionId);
  assert.equal(session.turns, 2);
  assert.deepEqual(
    session.messages.map((m) => [m.role, m.content, m.status ?? null]),
    [
      ["user", "recall one", null],
      ["assistant", "heard: nothing", "complete"],
      ["user", "recall two", null],
      ["assistant", two.text, "complete"],
    ],
  );
  const gone = await fetch(`${GATEWAY}/api/chat/sessions/${sessionId}`, { method: "DELETE" });
  assert.equal(gone.status, 204);
  const again = await fetch(`${GATEWAY}/api/chat/sessions/${sessionId}`);
  assert.equal(again.status, 404);
  assert.equal((await again.json()).error.code, "unknown_session");
  socket.close();
});
