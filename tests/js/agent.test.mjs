// An IDE agent's loop with the official socket.io-client: the model thinks
// (ai:reasoning), calls two tools in parallel (ai:tool_call pieces, then
// ai:done with toolCalls and finishReason "tool_calls"), the frontend runs
// them and sends their results on the same session with no prompt, and
// the model answers. `runAgent` is the README's example, verbatim.
// Started by tests/agents.rs (GATEWAY_URL) with a fake OpenAI-compatible
// upstream that calls read_file and grep, then answers with the results.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const GATEWAY = process.env.GATEWAY_URL;
if (!GATEWAY) throw new Error("run through `cargo test --test agents`");

// --- the README's example -------------------------------------------------
const tools = [
  { name: "read_file", description: "Read a file of the workspace",
    parameters: { type: "object", properties: { path: { type: "string" } }, required: ["path"] } },
  { name: "grep", parameters: { type: "object", properties: { pattern: { type: "string" } } } },
];

// One stream to its end: what it showed, and ai:done.
function stream(socket, request, show) {
  return new Promise(async (resolve, reject) => {
    const ack = await socket.emitWithAck("ai:stream", request);
    if (!ack.ok) return reject(new Error(`${ack.error.code}: ${ack.error.message}`));
    const mine = (handler) => (p) => p.streamId === ack.streamId && handler(p);
    const handlers = {
      "ai:reasoning": mine((p) => show.thinking(p.data)),
      "ai:token": mine((p) => show.text(p.data)),
      "ai:tool_call": mine((p) => show.toolCall(p.index, p.name, p.argumentsDelta)),
      "ai:done": mine((p) => { off(); resolve(p); }),
      "ai:stream:error": mine((p) => { off(); reject(new Error(`${p.code}: ${p.error}`)); }),
      "ai:stream:cancelled": mine((p) => { off(); reject(new Error(`cancelled: ${p.reason}`)); }),
    };
    const off = () => Object.entries(handlers).forEach(([e, h]) => socket.off(e, h));
    Object.entries(handlers).forEach(([e, h]) => socket.on(e, h));
  });
}

// The loop: the session keeps the history, so each turn sends only what
// is new: the prompt, then the tools' results.
async function runAgent(socket, sessionId, prompt, runTool, show) {
  let request = { sessionId, prompt, tools };
  for (;;) {
    const done = await stream(socket, request, show);
    show.usage(done.usage);
    if (done.finishReason !== "tool_calls") return done;
    const messages = await Promise.all(done.toolCalls.map(async (call) => ({
      role: "tool", toolCallId: call.id,
      content: await runTool(call.name, JSON.parse(call.arguments)),
    })));
    request = { sessionId, tools, messages };
  }
}
// ---------------------------------------------------------------------------

test("an agent loop: reasoning, two tool calls, their results, the answer", async () => {
  const socket = io(`${GATEWAY}/ai`, { reconnection: false });
  await new Promise((resolve, reject) => {
    socket.once("ai:connected", resolve);
    socket.once("connect_error", reject);
  });
  const seen = { thinking: "", text: "", calls: {}, usage: [] };
  const show = {
    thinking: (t) => { seen.thinking += t; },
    text: (t) => { seen.text += t; },
    toolCall: (i, name, piece) => {
      seen.calls[i] ??= { name, arguments: "" };
      seen.calls[i].arguments += piece;
    },
    usage: (u) => seen.usage.push(u),
  };
  const ran = [];
  const runTool = async (name, args) => {
    ran.push([name, args]);
    return name === "read_file" ? `contents of ${args.path}` : `1 match for ${args.pattern}`;
  };
  const sessionId = `agent-${Date.now()}`;
  const done = await runAgent(socket, sessionId, "Where is main?", runTool, show);

  assert.equal(seen.thinking, "The user wants main.");
  assert.deepEqual(seen.calls, {
    0: { name: "read_file", arguments: '{"path": "src/main.rs"}' },
    1: { name: "grep", arguments: '{"pattern": "fn main"}' },
  });
  assert.deepEqual(ran, [["read_file", { path: "src/main.rs" }], ["grep", { pattern: "fn main" }]]);
  assert.equal(seen.text, "Tools said: contents of src/main.rs | 1 match for fn main");
  assert.equal(done.finishReason, "stop");
  assert.equal(done.turn, 2);
  assert.deepEqual(seen.usage[0], { promptTokens: 20, completionTokens: 9, reasoningTokens: 3, cacheReadTokens: 4 });

  // The session kept the loop: prompt, calls, results, answer.
  const session = await (await fetch(`${GATEWAY}/api/chat/sessions/${sessionId}`)).json();
  assert.deepEqual(session.messages.map((m) => [m.role, m.toolCalls?.length ?? 0, m.toolCallId ?? null]), [
    ["user", 0, null], ["assistant", 2, null], ["tool", 0, "call_a"], ["tool", 0, "call_b"], ["assistant", 0, null],
  ]);
  socket.close();
});
