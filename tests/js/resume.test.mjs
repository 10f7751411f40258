// Reconnect and resume with the official socket.io-client: two streams,
// the transport cut mid-stream, the client's automatic reconnection, then
// `ai:reconnect` with each stream's last tokenCount. Every stream's text
// must equal what the upstream sent, no token twice. Started by
// tests/js_client.rs (GATEWAY_URL, FAKE_OLLAMA_URL).
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const GATEWAY = process.env.GATEWAY_URL;
if (!GATEWAY) throw new Error("run through `cargo test --test js_client`");

const expected = (n) => Array.from({ length: n }, (_, i) => `t${i} `).join("");

test("cut the transport mid-stream, reconnect, resume exactly once", async () => {
  const socket = io(`${GATEWAY}/ai`, {
    transports: ["websocket"],
    reconnectionDelay: 50,
    reconnectionDelayMax: 100,
  });
  const streams = new Map(); // streamId -> { last, text, done }
  let session = null; // { clientId, resumeToken }
  let cuts = 0;
  let resumed = 0;

  socket.on("ai:connected", (hello) => {
    if (!session) {
      session = { clientId: hello.clientId, resumeToken: hello.resumeToken };
      return;
    }
    socket.emit("ai:reconnect", {
      previousClientId: session.clientId,
      resumeToken: session.resumeToken,
      streams: [...streams].map(([streamId, s]) => ({ streamId, lastTokenCount: s.last })),
    });
  });
  socket.on("ai:reconnect:success", (r) => {
    assert.equal(r.previousClientId, session.clientId);
    assert.notEqual(r.resumeToken, session.resumeToken);
    session = { clientId: r.newClientId, resumeToken: r.resumeToken };
    resumed++;
  });
  socket.on("ai:reconnect:failed", (f) => assert.fail(`resume refused: ${JSON.stringify(f)}`));
  socket.on("ai:token", (t) => {
    const s = streams.get(t.streamId);
    const merged = t.metadata?.coalesced ?? 1;
    assert.equal(t.tokenCount - merged, s.last, `gap or duplicate on ${t.streamId}`);
    s.last = t.tokenCount;
    s.text += t.data;
    socket.emit("ai:ack", { streamId: t.streamId, tokenCount: t.tokenCount });
    // Cut the transport twice, mid-stream.
    if (t.streamId === "ra" && (s.last === 40 || s.last === 120) && cuts < 2) {
      cuts++;
      socket.io.engine.close();
    }
  });
  const finished = new Promise((resolve) => {
    socket.on("ai:done", (d) => {
      streams.get(d.streamId).done = d;
      if ([...streams.values()].every((s) => s.done)) resolve();
    });
  });

  await new Promise((resolve) => socket.once("ai:connected", resolve));
  for (const id of ["ra", "rb"]) {
    streams.set(id, { last: 0, text: "", done: null });
    const ack = await socket.emitWithAck("ai:stream", { prompt: `resume-${id}`, streamId: id });
    assert.equal(ack.ok, true);
  }
  await finished;
  assert.equal(cuts, 2);
  assert.equal(resumed, 2);
  for (const [id, s] of streams) {
    assert.equal(s.text, expected(200), `stream ${id}`);
    assert.equal(s.done.totalTokens, 200);
  }
  socket.close();
});
