// The SDK against the real gateway, over the official socket.io-client:
// concurrent streams with exact text, the transport cut mid-stream and
// resumed, cancel through AbortSignal (the upstream connection closed),
// a slow reader engaging the server's credits, failures as typed values,
// and auth. Started by tests/sdk_client.rs, which runs the gateway and a
// fake Ollama and passes GATEWAY_URL, FAKE_OLLAMA_URL, AUTH_GATEWAY_URL and
// AUTH_SECRET; each prompt below picks a script there.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { ACK_EVERY_TOKENS, connect } from "../dist/index.js";

const GATEWAY = process.env.GATEWAY_URL;
const FAKE = process.env.FAKE_OLLAMA_URL;
const skip = !GATEWAY && "needs the gateway: run `cargo test --test sdk_client`";

/** The fake upstream's text for a script of `n` tokens. */
const expected = (n) => Array.from({ length: n }, (_, i) => `t${i} `).join("");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fast = { reconnectionDelay: 50, reconnectionDelayMax: 100 };

/** Read a stream, checking the protocol's order and that positions move
 * on with no gap and no repeat (a coalesced token moves several). */
async function readChecked(stream, onToken = () => {}) {
  const types = [];
  let position = 0;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === "token") {
      const merged = ev.metadata?.coalesced ?? 1;
      assert.equal(ev.tokenCount - merged, position, `${stream.id}: gap or repeat at ${ev.tokenCount}`);
      position = ev.tokenCount;
      await onToken(ev);
    }
  }
  const body = types.filter((t) => t !== "backpressure");
  assert.equal(body[0], "start", `${stream.id} starts with start`);
  assert.ok(body.slice(1, -1).every((t) => t === "token"), `${stream.id}: only tokens between start and the end`);
  return { result: await stream.done, types };
}

/** The fake upstream's record of the request for `prompt`, once `pred` holds. */
async function upstreamRecord(prompt, pred) {
  for (let i = 0; i < 100; i++) {
    const log = await (await fetch(`${FAKE}/_log`)).json();
    const hit = log.find((e) => e.prompt === prompt && pred(e));
    if (hit) return hit;
    await sleep(50);
  }
  assert.fail(`the fake upstream has no matching record for ${prompt}`);
}

test("two streams at once on one connection: exact text, who served them, one terminal each", { skip }, async () => {
  const gw = connect(GATEWAY); // polling, then upgraded to WebSocket, as in a browser
  try {
    const hello = await gw.ready;
    assert.match(hello.clientId, /^c_/);
    const a = gw.stream({ prompt: "two-a", agentContext: { activeFile: "App.js", language: "javascript" } });
    const b = gw.stream({ prompt: "two-b", useOrchestrator: false });
    const [ra, rb] = await Promise.all([readChecked(a), readChecked(b)]);
    assert.equal(ra.result.status, "complete");
    assert.equal(ra.result.text, expected(150));
    assert.equal(ra.result.done.totalTokens, 150);
    assert.equal(ra.result.position, 150);
    assert.equal(ra.result.start.provider, "ollama");
    assert.equal(typeof ra.result.start.agent, "string", "orchestrated: an agent served");
    assert.equal(rb.result.text, expected(90));
    assert.equal(rb.result.start.agent, null, "direct: no agent");
    assert.equal(rb.result.done.finishReason, "stop");
    assert.ok(gw.counters.acksSent >= Math.floor(150 / ACK_EVERY_TOKENS), `acks sent: ${gw.counters.acksSent}`);
  } finally {
    gw.close();
  }
});

test("the transport cut mid-stream, twice: the SDK resumes and each iterator sees every token once", { skip }, async () => {
  const gw = connect(GATEWAY, { socket: { transports: ["websocket"], ...fast } });
  try {
    await gw.ready;
    const resumedAt = [];
    let cutAt = 0;
    gw.on("resumed", () => resumedAt.push(performance.now() - cutAt));
    const a = gw.stream({ prompt: "cut-a" });
    const b = gw.stream({ prompt: "cut-b" });
    const cuts = [60, 180];
    const [ra, rb] = await Promise.all([
      readChecked(a, (ev) => {
        if (cuts.length && ev.tokenCount >= cuts[0]) {
          cuts.shift();
          cutAt = performance.now();
          gw.dropConnection();
        }
      }),
      readChecked(b),
    ]);
    assert.equal(cuts.length, 0, "both cuts happened mid-stream");
    assert.equal(gw.counters.resumes, 2);
    assert.equal(ra.result.text, expected(300));
    assert.equal(rb.result.text, expected(300));
    assert.equal(ra.result.done.totalTokens, 300);
    const stats = await (await fetch(`${GATEWAY}/stats`)).json();
    assert.ok(stats.resume.succeeded >= 2);
    console.log(`resume: cut to ai:reconnect:success in ${resumedAt.map((ms) => ms.toFixed(1)).join(" and ")} ms; repeats dropped: ${gw.counters.repeatsDropped}`);
  } finally {
    gw.close();
  }
});

test("cancel through AbortSignal: the stream ends cancelled and the upstream connection is closed", { skip }, async () => {
  const gw = connect(GATEWAY);
  try {
    const ctl = new AbortController();
    const s = gw.stream({ prompt: "cancel-me" }, { signal: ctl.signal });
    const { result, types } = await readChecked(s, (ev) => {
      if (ev.tokenCount === 5) ctl.abort();
    });
    assert.equal(result.status, "cancelled");
    assert.equal(result.cancelled.reason, "client");
    assert.equal(types.at(-1), "cancelled");
    assert.ok(result.text.startsWith(expected(5)));
    const served = await upstreamRecord("cancel-me", (e) => e.closed_early);
    assert.ok(served.tokens_written < 1000, `the upstream stopped at ${served.tokens_written} of 1000`);
  } finally {
    gw.close();
  }
});

test("breaking out of the loop cancels the stream", { skip }, async () => {
  const gw = connect(GATEWAY);
  try {
    const s = gw.stream({ prompt: "break-me" });
    let n = 0;
    for await (const ev of s) if (ev.type === "token" && ++n === 3) break;
    const result = await s.done;
    assert.equal(result.status, "cancelled");
    assert.equal(result.cancelled.reason, "client");
    await upstreamRecord("break-me", (e) => e.closed_early);
  } finally {
    gw.close();
  }
});

test("a slow reader engages the server's credits: what arrives unread stays near the ack window", { skip }, async () => {
  // The upstream writes all 400 tokens at once; `slow` merges nothing, so
  // every event is one token and the unread backlog is what the credits
  // let through. Without acks that follow reading it would be all 400.
  const gw = connect(GATEWAY, { backpressurePolicy: "slow" });
  try {
    const hello = await gw.ready;
    const s = gw.stream({ prompt: "slow-reader" });
    let maxLag = 0;
    const started = performance.now();
    const { result, types } = await readChecked(s, async () => {
      maxLag = Math.max(maxLag, s.received - s.position);
      await sleep(3);
    });
    const seconds = (performance.now() - started) / 1000;
    console.log(`slow reader: 400 tokens in ${seconds.toFixed(2)} s, unread backlog peaked at ${maxLag} tokens (ack window ${hello.ackWindow}), ${gw.counters.acksSent} acks`);
    assert.equal(result.text, expected(400));
    assert.ok(maxLag <= hello.ackWindow + ACK_EVERY_TOKENS, `unread backlog peaked at ${maxLag} (ack window ${hello.ackWindow})`);
    assert.ok(maxLag >= hello.ackWindow / 2, `the credits were used (backlog ${maxLag})`);
    assert.ok(types.includes("backpressure"), "the stream saw backpressure engage");
    // Relieved is announced at most a second after engaged, maybe after
    // the stream's end: the gateway's state says it.
    for (let i = 0; i < 50 && gw.backpressure?.state !== "relieved"; i++) await sleep(50);
    assert.equal(gw.backpressure.state, "relieved");
  } finally {
    gw.close();
  }
});

test("failures are typed values: a refused request and an unreachable upstream", { skip }, async () => {
  const gw = connect(GATEWAY);
  try {
    const bad = await gw.stream({ prompt: "" }).collect();
    assert.equal(bad.status, "error");
    assert.equal(bad.error.code, "invalid_request");
    assert.equal(bad.error.retryable, false);
    assert.match(bad.error.message, /prompt/);
    const down = gw.stream({ prompt: "unavailable" });
    const { result } = await readChecked(down);
    assert.equal(result.error.code, "upstream_unavailable");
    assert.equal(result.error.retryable, true);
    assert.equal(result.start.provider, "ollama");
    assert.equal(gw.state, "ready", "the connection is fine");
  } finally {
    gw.close();
  }
});

/** An HS256 JWT for `sub`, valid for ten minutes. */
function jwt(secret, sub) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

test("auth on: refused without a token (a typed failure), streams with one", { skip }, async () => {
  const url = process.env.AUTH_GATEWAY_URL;
  const secret = process.env.AUTH_SECRET;
  assert.ok(url && secret, "AUTH_GATEWAY_URL and AUTH_SECRET are set by the runner");
  const refused = connect(url);
  const waiting = refused.stream({ prompt: "auth" });
  await assert.rejects(refused.ready, (e) => e.code === "unauthorized" && e.retryable === false);
  assert.equal((await waiting.done).error.code, "unauthorized");
  assert.equal(refused.state, "closed");

  const gw = connect(url, { token: () => jwt(secret, "sdk-user") });
  try {
    await gw.ready;
    const r = await gw.stream({ prompt: "auth" }).collect();
    assert.equal(r.text, expected(20));
  } finally {
    gw.close();
  }
});
