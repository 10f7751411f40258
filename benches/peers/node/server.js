// Benchmark peer: the `/ai` relay as people write it today with the npm
// `socket.io` v4 server on Node, driven by the same load generator and the
// same fake Ollama upstream as streamgate (benches/loadgen).
//
// Data flow: a client connects to namespace `/ai` and gets `ai:connected`;
// `ai:stream` (with an ack) starts one fetch() of `POST /api/chat` on the
// upstream; each NDJSON line of the body becomes one `ai:token` event with
// the same payload shape as streamgate's; the `done` line becomes
// `ai:stream:complete` + `ai:done`. `ai:cancel` aborts the fetch (closing
// the upstream connection) and emits `ai:stream:cancelled`. No artificial
// slowness, no extra work: this is the idiomatic baseline.
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.env.PORT || 3100);
const upstream = (process.env.OLLAMA_BASE_URL || "http://127.0.0.1:11434").replace(/\/$/, "");
const model = process.env.OLLAMA_DEFAULT_MODEL || "llama3.2";

const httpServer = createServer();
const io = new Server(httpServer, { cors: { origin: "*" } });
let nextClient = 0;
let nextStream = 0;

io.of("/ai").on("connection", (socket) => {
  const clientId = `c_${++nextClient}`;
  const streams = new Map(); // streamId -> AbortController
  socket.emit("ai:connected", {
    clientId,
    resumeToken: "",
    maxConcurrentStreams: 10,
    backpressureThreshold: 100,
    backpressurePolicy: "coalesce",
    ackWindow: 256,
    heartbeatIntervalMs: 30000,
    reconnectWindowMs: 30000,
    serverVersion: "peer-node",
    timestamp: Date.now(),
  });

  socket.on("ai:stream", (req, ack) => {
    const reply = typeof ack === "function" ? ack : () => {};
    if (!req || typeof req.prompt !== "string" || req.prompt.length === 0) {
      reply({ ok: false, error: { code: "invalid_request", message: "prompt is required" } });
      return;
    }
    const streamId = req.streamId || `s_${++nextStream}`;
    if (streams.has(streamId)) {
      reply({ ok: false, error: { code: "duplicate_stream_id", message: "streamId is live" } });
      return;
    }
    const ac = new AbortController();
    streams.set(streamId, ac);
    reply({ ok: true, streamId });
    relay(socket, streamId, req, ac).finally(() => streams.delete(streamId));
  });

  socket.on("ai:cancel", (req) => {
    const ac = req && streams.get(req.streamId);
    if (!ac) {
      socket.emit("ai:error", { code: "unknown_stream", error: "no such live stream", details: {} });
      return;
    }
    ac.abort();
  });

  socket.on("disconnect", () => {
    for (const ac of streams.values()) ac.abort();
  });
});

async function relay(socket, streamId, req, ac) {
  const started = Date.now();
  let tokenCount = 0;
  const usedModel = req.model || model;
  try {
    const res = await fetch(`${upstream}/api/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: usedModel,
        messages: [...(req.messages || []), { role: "user", content: req.prompt }],
        stream: true,
      }),
      signal: ac.signal,
    });
    if (!res.ok) throw new Error(`upstream HTTP ${res.status}`);
    socket.emit("ai:stream:start", {
      streamId, provider: "ollama", model: usedModel, agent: null, intent: null, timestamp: Date.now(),
    });
    const decoder = new TextDecoder();
    let partial = "";
    let finished = false;
    for await (const bytes of res.body) {
      partial += decoder.decode(bytes, { stream: true });
      let nl;
      while ((nl = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, nl).trim();
        partial = partial.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.error) throw new Error(msg.error);
        const content = msg.message && msg.message.content;
        if (content) {
          tokenCount += 1;
          socket.emit("ai:token", { streamId, data: content, tokenCount, agent: null });
        }
        if (msg.done) {
          socket.emit("ai:stream:complete", { streamId, agent: null, intent: null, confidence: null });
          socket.emit("ai:done", {
            streamId,
            totalTokens: tokenCount,
            duration: Date.now() - started,
            finishReason: msg.done_reason || "stop",
            usage: { promptTokens: msg.prompt_eval_count ?? null, completionTokens: msg.eval_count ?? null },
            droppedTokens: 0,
          });
          finished = true; // read on to the body's end so the connection is reused
        }
      }
    }
    if (!finished) throw new Error("stream ended before its done line");
  } catch (err) {
    if (ac.signal.aborted) {
      if (socket.connected) {
        socket.emit("ai:stream:cancelled", { streamId, reason: "client", tokenCount });
      }
      return;
    }
    socket.emit("ai:stream:error", { streamId, code: "upstream_error", error: String(err.message || err), retryable: true });
  }
}

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`peer-node listening on ${port}`);
});
