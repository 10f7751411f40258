// The ops page's behaviour: poll /stats every second, keep the last two
// minutes, and draw one small canvas chart per question an operator asks
// at a glance (how many streams, how fast, how long to the first token,
// how deep the queues, how often clients fall behind, which provider
// fails). Counters that only grow are charted as rates per second.

import { askToken, authHeaders, el } from "/assets/common.js";

const PERIOD_MS = 1000;
const KEEP = 120;
const COLORS = ["#22d3ee", "#4ade80", "#fbbf24", "#f472b6", "#a78bfa", "#fb923c"];

/** Samples, oldest first: { t, stats }. */
const samples = [];

/** Per-second rate of a growing counter between the last two samples. */
function rate(i, get) {
  if (i === 0) return null;
  const [a, b] = [samples[i - 1], samples[i]];
  const dt = (b.t - a.t) / 1000;
  const v = get(b.stats) - get(a.stats);
  return dt > 0 && v >= 0 ? v / dt : null;
}

const providers = (s) => Object.keys(s.providers ?? {});

/** Each chart: its series as (sample index) -> number | null. */
const CHARTS = [
  { id: "streams", title: "Active streams", unit: "", series: () => [{ name: "active", at: (i) => samples[i].stats.streams.active }] },
  { id: "tokens", title: "Tokens per second", unit: "/s", series: () => [{ name: "relayed", at: (i) => samples[i].stats.tokens.perSecond }] },
  {
    id: "ttft", title: "Time to first token", unit: " ms",
    // p50 solid, p99 dashed, one colour per provider; providers that
    // never served are left out.
    series: (s) => providers(s).flatMap((p, k) => [
      { name: `${p} p50`, color: k, at: (i) => samples[i].stats.providers[p]?.timeToFirstTokenMs?.p50 ?? null },
      { name: `${p} p99`, color: k, dashed: true, at: (i) => samples[i].stats.providers[p]?.timeToFirstTokenMs?.p99 ?? null },
    ]).filter((x) => samples.some((_, i) => x.at(i) !== null)),
  },
  {
    id: "queues", title: "Queue depth (events)", unit: "",
    series: () => [
      { name: "all clients", at: (i) => samples[i].stats.queues.total },
      { name: "largest client", at: (i) => samples[i].stats.queues.largest },
    ],
  },
  {
    id: "backpressure", title: "Backpressure", unit: "",
    series: () => [
      { name: "clients engaged", at: (i) => samples[i].stats.backpressure.engagedClients },
      { name: "episodes /s", at: (i) => rate(i, (s) => s.backpressure.events) },
    ],
  },
  {
    id: "errors", title: "Provider errors per second", unit: "/s",
    series: (s) => providers(s).map((p) => ({ name: p, at: (i) => rate(i, (x) => x.providers[p]?.errors ?? 0) })),
  },
];

const TOTALS = [
  ["clients", (s) => `${s.clients.connected} connected · ${s.clients.detached} detached`],
  ["streams", (s) => `${s.streams.started} started · ${s.streams.completed} completed · ${s.streams.cancelled} cancelled · ${s.streams.failed} failed`],
  ["tokens", (s) => `${s.tokens.relayed} relayed · ${s.tokens.coalesced} coalesced · ${s.tokens.dropped} dropped`],
  ["resume", (s) => `${s.resume.succeeded} resumed · ${s.resume.failed} refused · ${s.resume.tokensReplayed} replayed`],
  ["providers", (s) => providers(s).map((p) => `${p}: ${s.providers[p].requests} req, ${s.providers[p].errors} err`).join(" · ") || "none"],
];

function setup() {
  for (const c of CHARTS) {
    const canvas = el("canvas", { id: `chart-${c.id}`, width: 360, height: 120 });
    c.node = el("figure", { class: "chart", "data-chart": c.id, "data-last": "" },
      el("figcaption", {}, el("span", {}, c.title), el("strong", { class: "now" }, "–")),
      canvas, el("div", { class: "legend muted" }));
    $charts().append(c.node);
  }
  for (const [name] of TOTALS) $totals().append(el("div", { "data-total": name }, el("span", { class: "muted" }, name), " ", el("span", { class: "v" }, "–")));
}
const $charts = () => document.getElementById("charts");
const $totals = () => document.getElementById("totals");

async function poll() {
  try {
    const r = await fetch("/stats", { cache: "no-store", headers: authHeaders() });
    if (r.status === 401) {
      await askToken("/stats answered 401: this gateway needs a token");
    } else if (r.ok) {
      samples.push({ t: Date.now(), stats: await r.json() });
      if (samples.length > KEEP) samples.shift();
      render();
      health("ok", "live");
    } else health("bad", `/stats answered ${r.status}`);
  } catch {
    health("bad", "gateway unreachable");
  }
  setTimeout(poll, PERIOD_MS);
}

function health(state, text) {
  const h = document.getElementById("health");
  h.dataset.state = state;
  h.textContent = text;
}

function render() {
  const last = samples[samples.length - 1].stats;
  document.body.dataset.samples = String(samples.length);
  document.getElementById("uptime").textContent = `up ${formatDuration(last.uptimeSeconds)}`;
  for (const [name, text] of TOTALS) $totals().querySelector(`[data-total="${name}"] .v`).textContent = text(last);
  for (const c of CHARTS) draw(c, c.series(last));
}

function draw(chart, series) {
  const canvas = chart.node.querySelector("canvas");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 360;
  const h = canvas.clientHeight || 120;
  if (canvas.width !== Math.round(w * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const values = series.flatMap((s) => samples.map((_, i) => s.at(i))).filter((v) => v !== null && Number.isFinite(v));
  const top = niceCeiling(Math.max(1, ...values));
  const pad = { l: 34, r: 6, t: 6, b: 14 };
  const x = (i) => pad.l + ((w - pad.l - pad.r) * (i + KEEP - samples.length)) / (KEEP - 1);
  const y = (v) => h - pad.b - ((h - pad.t - pad.b) * v) / top;
  // Grid: 0, half, top.
  g.font = "10px system-ui, sans-serif";
  g.fillStyle = "#64748b";
  g.strokeStyle = "#1e293b";
  g.lineWidth = 1;
  for (const v of [0, top / 2, top]) {
    g.beginPath();
    g.moveTo(pad.l, Math.round(y(v)) + 0.5);
    g.lineTo(w - pad.r, Math.round(y(v)) + 0.5);
    g.stroke();
    g.fillText(short(v), 2, y(v) + 3);
  }
  g.fillText("−2 min", pad.l, h - 2);
  g.fillText("now", w - pad.r - 18, h - 2);
  series.forEach((s, k) => {
    g.strokeStyle = colorOf(s, k);
    g.setLineDash(s.dashed ? [4, 3] : []);
    g.lineWidth = 1.75;
    g.beginPath();
    let drawing = false;
    samples.forEach((_, i) => {
      const v = s.at(i);
      if (v === null || !Number.isFinite(v)) {
        drawing = false;
        return;
      }
      if (drawing) g.lineTo(x(i), y(v));
      else g.moveTo(x(i), y(v));
      drawing = true;
    });
    g.stroke();
  });
  g.setLineDash([]);
  const now = series.map((s) => s.at(samples.length - 1));
  const headline = now.find((v) => v !== null && Number.isFinite(v));
  chart.node.querySelector(".now").textContent = series.length ? `${headline === undefined ? "–" : short(headline)}${chart.unit}` : "no data";
  chart.node.dataset.last = headline === undefined ? "" : String(headline);
  chart.node.querySelector(".legend").replaceChildren(...series.map((s, k) =>
    el("span", { style: `color:${colorOf(s, k)}` }, `${s.dashed ? "┄" : "━"} ${s.name} ${now[k] === null || now[k] === undefined ? "–" : short(now[k])}`)));
}

const colorOf = (s, k) => COLORS[(s.color ?? k) % COLORS.length];

/** 1, 2 or 5 times a power of ten, at least `v`. */
function niceCeiling(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((n) => n >= v);
}

function short(v) {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (v >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(1);
}

function formatDuration(s) {
  const [h, m] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60)];
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

setup();
poll();
