// The playground's behaviour: one SDK connection, one pane per stream
// (text as it arrives, who served it, cancel), the connection's state,
// backpressure and resumes in the bar, and the session picker over the
// sessions endpoints. Everything protocol-shaped is the SDK's
// (/assets/sdk/, the committed tsc output of clients/typescript).

import { connect, sessions } from "/assets/sdk/index.js";
import { askToken, el, getToken } from "/assets/common.js";

const $ = (id) => document.getElementById(id);
/** Panes by stream id, for the resume notes. */
const panes = new Map();
let gw;
let paneCount = 0;

function open() {
  // Come back quickly after a lost connection (socket.io-client's default
  // first delay is 0.5 to 1.5 s), so "Drop connection" shows the resume.
  gw = connect(location.origin, { token: () => getToken(), socket: { reconnectionDelay: 200, reconnectionDelayMax: 2000 } });
  gw.on("state", showState);
  gw.on("connected", (hello) => {
    $("client").textContent = `${hello.clientId} · v${hello.serverVersion}`;
  });
  gw.on("resumed", (r) => {
    const count = Number($("resumes").dataset.count) + 1;
    $("resumes").dataset.count = String(count);
    $("resumes").textContent = `resumed ${count}×`;
    for (const s of r.streams) panes.get(s.streamId)?.note(`connection lost; resumed after position ${panes.get(s.streamId).position()} (server at ${s.tokenCount})`);
    $("client").textContent = `${r.newClientId} · v${gw.hello?.serverVersion ?? "?"}`;
  });
  gw.on("resume_failed", (f) => {
    $("resumes").textContent = `resume refused (${f.reason})`;
  });
  gw.on("backpressure", (b) => {
    $("bp").dataset.state = b.state;
    $("bp").textContent = b.state === "engaged" ? `backpressure: ON (${b.policy}, queue ${b.queueSize}/${b.threshold})` : "backpressure: off";
    $("bp").title = b.message;
  });
  gw.ready.then(
    () => loadSessions(),
    async (failure) => {
      $("client").textContent = failure.message;
      if (failure.code !== "unauthorized") return;
      await askToken(failure.message);
      open();
    },
  );
  showState(gw.state);
}

function showState(state) {
  const labels = { connecting: "connecting…", ready: "connected", resuming: "resuming…", closed: "disconnected" };
  $("conn").dataset.state = state;
  $("conn").textContent = labels[state] ?? state;
  $("drop").disabled = state !== "ready";
}

// ---------------------------------------------------------------------------
// Streams

function request() {
  const prompt = $("prompt").value.trim();
  const agentContext = {};
  for (const [id, key] of [["active-file", "activeFile"], ["language", "language"], ["selection", "selection"]]) {
    const v = $(id).value.trim();
    if (v) agentContext[key] = v;
  }
  const req = { prompt, useOrchestrator: $("orchestrator").checked };
  if (Object.keys(agentContext).length) req.agentContext = agentContext;
  if ($("provider").value.trim()) req.provider = $("provider").value.trim();
  if ($("model").value.trim()) req.model = $("model").value.trim();
  if ($("session").value) req.sessionId = $("session").value;
  if ($("tools").checked) {
    req.tools = [{
      name: "read_file",
      description: "Read a file of the user's project",
      parameters: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
    }];
  }
  return req;
}

async function run(req) {
  const ctl = new AbortController();
  const stream = gw.stream(req, { signal: ctl.signal });
  const pane = newPane(stream, req, () => ctl.abort());
  panes.set(stream.id, pane);
  for await (const ev of stream) pane.show(ev);
  const result = await stream.done;
  pane.finish(result);
  if (req.sessionId) loadSessions();
}

function newPane(stream, req, cancel) {
  paneCount += 1;
  const text = el("pre", { class: "text" });
  const status = el("span", { class: "status" }, "waiting");
  const served = el("div", { class: "served muted" }, "waiting for the first token…");
  const count = el("span", { class: "count muted" }, "0 tokens");
  const cancelButton = el("button", { class: "cancel", type: "button" }, "Cancel");
  const closeButton = el("button", { class: "close", type: "button", title: "Remove this pane" }, "×");
  const reasoning = el("details", { class: "reasoning", hidden: true }, el("summary", {}, "reasoning"), el("pre", {}));
  const tools = el("ol", { class: "tools", hidden: true });
  const notes = el("ul", { class: "notes muted" });
  const meta = el("footer", { class: "meta muted" });
  const node = el("article", { class: "pane", "data-stream-id": stream.id, "data-status": "waiting", "data-position": "0" },
    el("header", {}, el("strong", {}, `#${paneCount}`), status, count, cancelButton, closeButton),
    served,
    el("div", { class: "prompt", title: req.prompt }, `› ${req.prompt}`),
    reasoning, text, tools, notes, meta);
  $("panes").prepend(node);
  cancelButton.addEventListener("click", cancel);
  closeButton.addEventListener("click", () => {
    cancel();
    node.remove();
    panes.delete(stream.id);
  });
  const setStatus = (s) => {
    node.dataset.status = s;
    status.textContent = s;
  };
  const renderTools = () => {
    tools.hidden = stream.toolCalls.length === 0;
    tools.replaceChildren(...stream.toolCalls.map((c) => el("li", {}, el("code", {}, `${c.name}(${c.arguments})`))));
  };
  return {
    position: () => stream.position,
    note: (msg) => notes.append(el("li", {}, msg)),
    show(ev) {
      switch (ev.type) {
        case "start":
          setStatus("streaming");
          served.textContent = `${ev.provider} · ${ev.model}${ev.agent ? ` · agent ${ev.agent} (${ev.intent})` : " · direct"}`;
          break;
        case "token":
          text.append(ev.data);
          break;
        case "reasoning":
          reasoning.hidden = false;
          reasoning.querySelector("pre").append(ev.data);
          break;
        case "tool_call":
          renderTools();
          break;
        case "backpressure":
          notes.append(el("li", {}, `backpressure ${ev.state} (queue ${ev.queueSize})`));
          return;
        default:
          return;
      }
      node.dataset.position = String(stream.position);
      count.textContent = `${stream.position} tokens`;
    },
    finish(result) {
      cancelButton.disabled = true;
      renderTools();
      if (result.status === "complete") {
        const d = result.done;
        setStatus("complete");
        // The drop policy may have left tokens out: show the repaired text.
        if (d.fullResponse !== undefined) text.textContent = result.text;
        meta.textContent = `${d.finishReason} · ${d.totalTokens} tokens in ${d.duration} ms${d.droppedTokens ? ` · ${d.droppedTokens} dropped (repaired)` : ""}${d.confidence != null ? ` · confidence ${d.confidence.toFixed(2)}` : ""}`;
      } else if (result.status === "cancelled") {
        setStatus("cancelled");
        meta.textContent = `cancelled (${result.cancelled.reason}) at position ${result.cancelled.tokenCount}`;
      } else {
        setStatus("error");
        meta.textContent = `${result.error.code}: ${result.error.message}${result.error.retryable ? " (retryable)" : ""}`;
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Sessions

function sessionsApi() {
  return sessions(location.origin, { token: () => getToken() });
}

async function loadSessions() {
  const note = $("sessions-note");
  let list;
  try {
    list = await sessionsApi().list();
  } catch (e) {
    note.textContent = `sessions unavailable: ${e.message}`;
    return;
  }
  const select = $("session");
  const current = select.value;
  if (list === null) {
    note.textContent = "no sessions: this gateway keeps no conversation history";
    select.replaceChildren(select.options[0]);
    return;
  }
  note.textContent = list.length ? `${list.length} session${list.length === 1 ? "" : "s"}` : "no sessions yet";
  const known = new Set(list.map((s) => s.id));
  const options = list.map((s) => el("option", { value: s.id }, `${s.id} · ${s.turns} turn${s.turns === 1 ? "" : "s"} · ${new Date(s.updatedAt).toLocaleTimeString()}`));
  // A new session exists on the server only after its first stream.
  if (current && !known.has(current)) options.unshift(el("option", { value: current }, `${current} · new`));
  select.replaceChildren(select.options[0], ...options);
  select.value = current;
}

async function showHistory(id) {
  const history = $("history");
  history.replaceChildren();
  if (!id) return;
  const session = await sessionsApi().get(id).catch(() => null);
  if (!session) return;
  for (const m of session.messages) {
    const content = typeof m.content === "string" ? m.content : m.content.map((p) => p.text ?? `[${p.type}]`).join(" ");
    history.append(el("li", { class: m.role }, el("strong", {}, m.role), " ", content.slice(0, 200), m.status && m.status !== "complete" ? ` (${m.status})` : ""));
  }
}

// ---------------------------------------------------------------------------

$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  const req = request();
  if (!req.prompt) return;
  run(req);
});
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("ask").requestSubmit();
});
$("drop").addEventListener("click", () => gw.dropConnection());
$("session").addEventListener("change", () => showHistory($("session").value));
$("new-session").addEventListener("click", () => {
  const id = `play_${Date.now().toString(36)}`;
  $("session").options[0].after(el("option", { value: id }, `${id} · new`));
  $("session").value = id;
  $("history").replaceChildren();
});

open();
