// The gateway's own pages in headless Chromium (Debian's chromium, driven
// by playwright-core): the playground runs two streams at once, cancels
// one, drops its connection and resumes the other to its exact text; the
// ops page's charts move with the traffic; with auth on the playground asks
// for a token. No console errors, no failed requests. Started by
// tests/browser_pages.rs (GATEWAY_URL, AUTH_GATEWAY_URL, AUTH_SECRET,
// FAKE_OLLAMA_URL, SCREENSHOTS, CHROMIUM).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const GATEWAY = process.env.GATEWAY_URL;
const FAKE = process.env.FAKE_OLLAMA_URL;
const SHOTS = process.env.SCREENSHOTS;
if (!GATEWAY || !FAKE || !SHOTS) throw new Error("run through `cargo test --test browser_pages`");

/** The fake upstream's text for a script of `n` tokens. */
const expected = (n) => Array.from({ length: n }, (_, i) => `t${i} `).join("");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let browser;
before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    // Playwright gives every launch a fresh, empty profile of its own. The
    // rest keeps Chromium off the network it would otherwise try to reach.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});
after(() => browser?.close());

/** A new page that records every console error, page error, failed
 * request and error response: none is allowed. */
async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const problems = [];
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`);
  });
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    problems.push(`console error: ${m.text()} (${m.location().url})`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  return { page, problems };
}

/** The pane of the stream whose prompt is `prompt`. */
const paneOf = (page, prompt) => page.locator(`.pane:has(.prompt[title="${prompt}"])`);
const position = async (pane) => Number(await pane.getAttribute("data-position"));

async function send(page, prompt) {
  await page.fill("#prompt", prompt);
  await page.click("#send");
}

async function upstreamClosedEarly(prompt) {
  for (let i = 0; i < 100; i++) {
    const log = await (await fetch(`${FAKE}/_log`)).json();
    if (log.some((e) => e.prompt === prompt && e.closed_early)) return true;
    await sleep(50);
  }
  return false;
}

test("playground: two streams at once, cancel one, drop the connection, the other resumes to its exact text", async () => {
  const { page, problems } = await newPage();
  await page.goto(`${GATEWAY}/`);
  await page.waitForSelector("#conn[data-state=ready]");
  await page.waitForFunction(() => /^no sessions/.test(document.getElementById("sessions-note").textContent));

  await page.fill("#active-file", "src/App.js");
  await page.fill("#language", "javascript");
  await page.fill("#selection", "function add(a, b) {\n  return a + b;\n}");
  await send(page, "pane-a");
  await send(page, "pane-b");
  const a = paneOf(page, "pane-a");
  const b = paneOf(page, "pane-b");
  // Text appears in both panes, side by side.
  await page.waitForFunction(() => [...document.querySelectorAll(".pane")].every((p) => Number(p.dataset.position) >= 20));
  assert.match(await a.locator(".served").textContent(), /ollama · .* · agent \w+/, "pane A names provider, model and agent");
  assert.match(await a.locator("pre.text").textContent(), /^t0 t1 t2 /);
  assert.match(await b.locator("pre.text").textContent(), /^t0 t1 t2 /);

  await a.locator("button.cancel").click();
  await page.waitForSelector('.pane[data-status=cancelled]');
  assert.match(await a.locator(".meta").textContent(), /cancelled \(client\)/);
  const aText = await a.locator("pre.text").textContent();
  assert.ok(expected(400).startsWith(aText) && aText.length < expected(400).length, "pane A holds a prefix of its text");
  assert.ok(await upstreamClosedEarly("pane-a"), "the cancel closed pane A's upstream request");

  const before = await position(b);
  assert.ok(before < 300, `pane B is still streaming (at ${before})`);
  await page.click("#drop");
  await page.waitForSelector('#resumes[data-count="1"]', { timeout: 10_000 });
  await page.waitForSelector('.pane[data-status=complete]', { timeout: 15_000 });
  assert.equal(await b.locator("pre.text").textContent(), expected(300), "pane B's text is exactly the upstream's");
  assert.equal(await position(b), 300);
  assert.match(await b.locator(".notes").textContent(), /resumed after position \d+/);
  assert.match(await b.locator(".meta").textContent(), /^stop · 300 tokens/);
  assert.equal(await a.getAttribute("data-status"), "cancelled", "nothing of A after its end");
  const stats = await (await fetch(`${GATEWAY}/stats`)).json();
  assert.ok(stats.resume.succeeded >= 1, "the gateway counted the resume");

  await page.screenshot({ path: join(SHOTS, "playground.png") });
  assert.deepEqual(problems, []);
  await page.close();
});

test("ops page: the charts move with the traffic", async () => {
  const { page: ops, problems } = await newPage();
  await ops.goto(`${GATEWAY}/ops`);
  await ops.waitForFunction(() => Number(document.body.dataset.samples) >= 2);
  const picture = () => ops.evaluate(() => document.getElementById("chart-tokens").toDataURL());
  const quiet = await picture();
  const samples = Number(await ops.getAttribute("body", "data-samples"));

  // Traffic from a playground page beside it.
  const { page: play, problems: playProblems } = await newPage();
  await play.goto(`${GATEWAY}/`);
  await play.waitForSelector("#conn[data-state=ready]");
  await send(play, "ops-load");
  await ops.waitForFunction(() => Number(document.querySelector('[data-chart="streams"]').dataset.last) >= 1, null, { timeout: 5000 });
  await ops.waitForFunction(() => Number(document.querySelector('[data-chart="tokens"]').dataset.last) > 0, null, { timeout: 5000 });
  await ops.waitForFunction((n) => Number(document.body.dataset.samples) >= n + 3, samples, { timeout: 5000 });
  assert.notEqual(await picture(), quiet, "the tokens chart was redrawn with the traffic");
  assert.match(await ops.locator('[data-chart="tokens"] .now').textContent(), /^\d+(\.\d)?k?\/s$/);
  assert.match(await ops.locator('[data-chart="ttft"] .legend').textContent(), /ollama p50 \d+/);
  assert.match(await ops.locator('[data-total="streams"]').textContent(), /\d+ started/);
  await ops.screenshot({ path: join(SHOTS, "ops.png") });

  await play.waitForSelector(".pane[data-status=complete]", { timeout: 10_000 });
  assert.equal(await paneOf(play, "ops-load").locator("pre.text").textContent(), expected(300));
  await ops.waitForFunction(() => document.querySelector('[data-chart="streams"]').dataset.last === "0", null, { timeout: 5000 });
  assert.deepEqual(problems, []);
  assert.deepEqual(playProblems, []);
  await play.close();
  await ops.close();
});

/** An HS256 JWT for `sub`, valid for ten minutes. */
function jwt(secret, sub) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

test("auth on: the playground asks for a token, keeps it out of the page, and streams with it", async () => {
  const url = process.env.AUTH_GATEWAY_URL;
  const secret = process.env.AUTH_SECRET;
  const { page, problems } = await newPage();
  // The refused connection's Engine.IO session: socket.io-client closes
  // it itself on the refusal, and a long-poll it had already sent may then
  // come back 400 (unknown session), which the browser logs. Only that is
  // forgiven, for that session only.
  const sids = [];
  page.on("response", async (r) => {
    if (/\/socket\.io\/\?EIO=4&transport=polling&t=[^&]+$/.test(r.url())) {
      const sid = /"sid":"([^"]+)"/.exec(await r.text().catch(() => ""))?.[1];
      if (sid) sids.push(sid);
    }
  });
  await page.goto(`${url}/`);
  await page.waitForSelector("#token-dialog[open]");
  assert.match(await page.locator("#token-reason").textContent(), /missing token/);
  assert.equal(await page.locator("#conn").getAttribute("data-state"), "closed");
  const refusedSid = sids[0];
  assert.ok(refusedSid, "the refused connection's handshake was seen");
  const token = jwt(secret, "browser-user");
  await page.fill("#token-input", token);
  await page.click("#token-submit");
  await page.waitForSelector("#conn[data-state=ready]");
  await send(page, "auth-pane");
  await page.waitForSelector(".pane[data-status=complete]");
  assert.equal(await paneOf(page, "auth-pane").locator("pre.text").textContent(), expected(30));
  // Nothing secret in what the gateway served: the token lives in this
  // tab's sessionStorage only, and no page holds the signing key.
  for (const path of ["/", "/ops", "/assets/playground.js", "/assets/common.js", "/assets/sdk/gateway.js"]) {
    const served = await (await fetch(`${url}${path}`)).text();
    assert.ok(!served.includes(secret) && !served.includes(token), `${path} holds nothing secret`);
  }
  assert.equal(await page.evaluate(() => sessionStorage.getItem("streamgate.token")), token);
  const closedPoll = (p) => p.includes(`sid=${refusedSid}`) && /(HTTP 400 |status of 400 )/.test(p);
  assert.deepEqual(problems.filter((p) => !closedPoll(p)), []);
  await page.close();
});
