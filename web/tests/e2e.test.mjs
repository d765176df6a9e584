// End-to-end tests of the demo page and herald.js in headless Chromium (Debian's chromium,
// driven by playwright-core) against a real stack: nginx, two gateways, the api, the worker,
// Postgres and Redis. deploy/local.sh test starts that stack and sets:
//   HERALD_E2E_URL       the stack's public origin (nginx)
//   HERALD_E2E_GATEWAYS  the two gateways' addresses, comma separated
//   HERALD_E2E_RUN_DIR   where their pid files are
// Set HERALD_SCREENSHOTS_DIR to also save screenshots of the page (docs/screenshots).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const BASE = process.env.HERALD_E2E_URL ?? "http://127.0.0.1:8000";
const GATEWAYS = (process.env.HERALD_E2E_GATEWAYS ?? "127.0.0.1:8011,127.0.0.1:8012").split(",");
const RUN_DIR = process.env.HERALD_E2E_RUN_DIR ?? ".run";
const SHOTS = process.env.HERALD_SCREENSHOTS_DIR;

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.HERALD_CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => browser?.close());

const uid = () => `e2e-${Math.random().toString(36).slice(2, 10)}`;

async function devToken(query) {
  const res = await fetch(`${BASE}/api/dev/token?${new URLSearchParams(query)}`);
  assert.equal(res.status, 200, "development tokens are on in the test stack");
  return (await res.json()).token;
}

async function publish(user, title, extra = {}) {
  const token = await devToken({ sub: "e2e-publisher", scope: "publish" });
  const res = await fetch(`${BASE}/api/notifications`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ recipients: [user], type: "new_ticket", priority: "medium", title, message: `About ${title}`, ...extra }),
  });
  assert.equal(res.status, 201);
  return (await res.json()).notification;
}

/** Opens the demo page for `user`; counts the WebSockets the page opens. */
async function openPage(context, user, sockets) {
  const page = await context.newPage();
  if (process.env.HERALD_E2E_DEBUG) page.on("console", (m) => console.log(`[${user}] ${m.text()}`));
  page.on("websocket", (ws) => sockets && sockets.push(ws.url()));
  await page.goto(`${BASE}/?user=${user}`);
  await page.waitForFunction(() => document.getElementById("status").dataset.state === "open", null, { timeout: 15_000 });
  return page;
}

const badge = (page) => page.evaluate(() => { const b = document.getElementById("badge"); return b.hidden ? 0 : Number(b.textContent); });
const toasts = (page, title) => page.locator(".toast .title", { hasText: title }).count();
const titles = (page) => page.$$eval("#list .item .title", (els) => els.map((e) => e.textContent));

test("a published notification shows as a toast and in the list, and the badge counts it", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const user = uid();
  const page = await openPage(context, user);
  assert.equal(await badge(page), 0);
  await publish(user, "Printer on fire");
  await page.locator(".toast .title", { hasText: "Printer on fire" }).waitFor();
  await page.waitForFunction(() => document.getElementById("badge").textContent === "1");
  const toast = page.locator(".toast").first();
  assert.match(await toast.getAttribute("class"), /kind-new/, "new tickets are green");
  await publish(user, "Server down", { priority: "urgent", type: "ticket_updated" });
  await page.locator(".toast.urgent .title", { hasText: "Server down" }).waitFor();
  await page.getByRole("button", { name: /Notifications, 2 unread/ }).click();
  assert.deepEqual(await titles(page), ["Server down", "Printer on fire"], "newest first");
  if (SHOTS) {
    await page.screenshot({ path: `${SHOTS}/demo-toasts.png` });
  }
  // Dismiss by the close button; the rest auto-dismiss after 5 s.
  await page.locator(".toast .close").first().click();
  await page.waitForFunction(() => document.querySelectorAll(".toast").length === 1);
  await context.close();
});

test("mark-read in one tab updates the other without a reload", async () => {
  const context = await browser.newContext();
  const user = uid();
  const one = await openPage(context, user);
  const two = await openPage(context, user);
  const n = await publish(user, "Review due");
  for (const p of [one, two]) await p.waitForFunction(() => document.getElementById("badge").textContent === "1");
  await one.getByRole("button", { name: /Notifications/ }).click();
  await one.getByRole("button", { name: `Mark "Review due" as read` }).click();
  await two.waitForFunction(() => document.getElementById("badge").hidden);
  await two.getByRole("button", { name: /Notifications/ }).click();
  await two.waitForFunction((id) => !document.querySelector(`.item[data-id="${id}"]`).classList.contains("unread"), n.id);
  if (SHOTS) {
    await two.screenshot({ path: `${SHOTS}/demo-inbox.png` });
  }
  await context.close();
});

test("two tabs share one WebSocket and a toast shows once", async () => {
  const context = await browser.newContext();
  const user = uid();
  const sockets = [];
  const one = await openPage(context, user, sockets);
  const two = await openPage(context, user, sockets);
  await publish(user, "Only once");
  await one.waitForFunction(() => document.getElementById("badge").textContent === "1");
  await two.waitForFunction(() => document.getElementById("badge").textContent === "1");
  // Whichever tab shows it, exactly one does: wait until one has it, then count both.
  await Promise.any([one, two].map((p) => p.locator(".toast .title", { hasText: "Only once" }).waitFor()));
  assert.equal((await toasts(one, "Only once")) + (await toasts(two, "Only once")), 1);
  assert.equal(sockets.filter((u) => u.includes("/api/notifications/ws")).length, 1, "one WebSocket for both tabs");
  await context.close();
});

test("closing the leader tab hands the connection to the other within seconds", async () => {
  const context = await browser.newContext();
  const user = uid();
  const one = await openPage(context, user);
  const two = await openPage(context, user);
  const [leader, follower] = (await one.evaluate(() => globalThis.herald.isLeader)) ? [one, two] : [two, one];
  await leader.close();
  const started = Date.now();
  await follower.waitForFunction(() => globalThis.herald.isLeader && document.getElementById("status").dataset.state === "open", null, { timeout: 10_000 });
  assert.ok(Date.now() - started < 10_000);
  await publish(user, "After handover");
  await follower.locator(".toast .title", { hasText: "After handover" }).waitFor();
  await context.close();
});

async function connectionsOn(gateway) {
  const text = await (await fetch(`http://${gateway}/metrics`)).text();
  return Number(/^herald_gateway_connections (\d+)/m.exec(text)?.[1] ?? 0);
}

test("when its gateway dies the page reconnects through nginx and gets what it missed, once, in order", async () => {
  const context = await browser.newContext();
  const user = uid();
  const page = await openPage(context, user);
  await publish(user, "before");
  await page.waitForFunction(() => document.getElementById("badge").textContent === "1");
  // Earlier tests' pages are closed; wait until only this page's socket is counted.
  let counts = [];
  for (let i = 0; i < 100; i++) {
    counts = await Promise.all(GATEWAYS.map(connectionsOn));
    if (counts.reduce((a, b) => a + b, 0) === 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const index = counts.findIndex((c) => c > 0);
  assert.ok(index >= 0, `the page is connected to a gateway (${counts})`);
  const pid = Number(readFileSync(`${RUN_DIR}/gateway${index + 1}.pid`, "utf8"));
  const states = [];
  await page.exposeFunction("recordState", (s) => states.push(s));
  await page.evaluate(() => globalThis.herald.addEventListener("status", (e) => globalThis.recordState(e.detail.state)));
  process.kill(pid, "SIGKILL");
  for (const t of ["missed-1", "missed-2", "missed-3"]) await publish(user, t);
  await page.waitForFunction(() => document.getElementById("badge").textContent === "4", null, { timeout: 20_000 });
  await page.waitForFunction(() => document.getElementById("status").dataset.state === "open");
  assert.ok(states.includes("reconnecting"), `it showed reconnecting (${states})`);
  await page.getByRole("button", { name: /Notifications/ }).click();
  assert.deepEqual(await titles(page), ["missed-3", "missed-2", "missed-1", "before"], "each once, in order");
  await context.close();
});
