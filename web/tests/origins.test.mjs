// Browser end-to-end tests of the seeds' own frontends, served from THEIR OWN origins, against a
// Herald stack on another origin (nginx, two gateways, the api, the worker, Postgres and Redis).
// Headless Chromium (Debian's chromium, driven by playwright-core) enforces CORS and WebSocket
// origins exactly as a user's browser does:
//   BELL_ORIGIN       the performance-management seed's bell, plain JS: REST inbox + WebSocket
//   DASHBOARD_ORIGIN  the support-desk seed's admin dashboard: the real socket.io-client bundle
//   FOREIGN_ORIGIN    a page the stack does not allow: refused on REST, WebSocket and Socket.IO
// The test serves those pages itself (a small node http server on each port). The stack must be
// started with CORS_ALLOWED_ORIGINS holding BELL_ORIGIN and DASHBOARD_ORIGIN (and not
// FOREIGN_ORIGIN), e.g. CORS_ALLOWED_ORIGINS=http://127.0.0.1:3000,http://127.0.0.1:3001.
//   HERALD_E2E_URL  the stack's public origin (nginx)
//   HERALD_E2E_DEBUG  when set, the pages' console is printed
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, request } from "node:http";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const BELL_ORIGIN = "http://127.0.0.1:3000";
const DASHBOARD_ORIGIN = "http://127.0.0.1:3001";
const FOREIGN_ORIGIN = "http://127.0.0.1:3002";

const BASE = process.env.HERALD_E2E_URL ?? "http://127.0.0.1:18000";
const WAIT = 15_000; // longest wait for anything the pages should see

// ---------------------------------------------------------------------------------------------
// The pages, as each seed's frontend would write them (plain JS, no framework). Both read the
// stack's origin and the user's token from their own URL: ?api=<origin>&token=<jwt>.
// ---------------------------------------------------------------------------------------------

// The performance-management seed's notification bell. Every REST answer (or fetch failure) is
// also kept in `calls`, every WebSocket message in `received` and every socket event in
// `socketEvents`, for the test to read.
const BELL_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Performance reviews</title></head>
<body>
<header>
  <span id="status">connecting</span>
  <button id="bell" type="button" onclick="fetchNotifications()">Notifications <span id="badge">0</span></button>
</header>
<p id="error" role="alert"></p>
<ul id="list"></ul>
<script>
const params = new URLSearchParams(location.search);
const API = params.get("api");
const WS = API.replace(/^http/, "ws");
const token = params.get("token");

let notifications = [];
let unreadCount = 0;
const calls = [];
const received = [];
const socketEvents = [];

function render() {
  document.getElementById("badge").textContent = String(unreadCount);
  const list = document.getElementById("list");
  list.replaceChildren();
  for (const n of notifications) {
    const item = document.createElement("li");
    item.dataset.id = n.id;
    item.className = n.is_read ? "read" : "unread";
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = n.title;
    item.append(title);
    if (!n.is_read) {
      const read = document.createElement("button");
      read.textContent = "Mark read";
      read.onclick = () => markAsRead(n.id);
      item.append(read);
    }
    const remove = document.createElement("button");
    remove.textContent = "Delete";
    remove.onclick = () => deleteNotification(n.id);
    item.append(remove);
    list.append(item);
  }
}

function failed(call, error) {
  calls.push({ call, error: String(error) });
  document.getElementById("error").textContent = String(error);
}

async function fetchNotifications() {
  try {
    const response = await fetch(API + "/api/notifications?limit=10&unread_only=true", {
      headers: { Authorization: "Bearer " + token },
    });
    const data = await response.json();
    calls.push({ call: "list", status: response.status, body: data });
    notifications = data.notifications;
    unreadCount = data.unread_count;
    render();
  } catch (error) {
    failed("list", error);
  }
}

async function markAsRead(id) {
  try {
    const response = await fetch(API + "/api/notifications/" + id + "/read", {
      method: "PUT",
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    });
    const data = await response.json();
    calls.push({ call: "read", status: response.status, body: data });
    if (response.ok) markedRead(id);
  } catch (error) {
    failed("read", error);
  }
}

async function deleteNotification(id) {
  try {
    const response = await fetch(API + "/api/notifications/" + id, {
      method: "DELETE",
      headers: { Authorization: "Bearer " + token },
    });
    const data = await response.json();
    calls.push({ call: "delete", status: response.status, body: data });
    if (response.ok) {
      const gone = notifications.find((n) => n.id === id);
      if (gone && !gone.is_read) unreadCount = Math.max(0, unreadCount - 1);
      notifications = notifications.filter((n) => n.id !== id);
      render();
    }
  } catch (error) {
    failed("delete", error);
  }
}

// Whichever comes first, the REST answer or the WebSocket's marked_read, counts it once.
function markedRead(id) {
  const n = notifications.find((n) => n.id === id);
  if (n && !n.is_read) {
    n.is_read = true;
    unreadCount = Math.max(0, unreadCount - 1);
  }
  render();
}

function connectWebSocket() {
  const ws = new WebSocket(WS + "/api/notifications/ws?token=" + token);
  ws.onopen = () => socketEvents.push("open");
  ws.onerror = () => socketEvents.push("error");
  ws.onclose = (event) => {
    socketEvents.push("close");
    document.getElementById("status").textContent = "disconnected";
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    received.push(message);
    switch (message.type) {
      case "connection_established":
        document.getElementById("status").textContent = "connected";
        break;
      case "new_notification":
        notifications.unshift(message.notification);
        if (!message.notification.is_read) unreadCount += 1;
        render();
        break;
      case "marked_read":
        markedRead(message.notification_id);
        break;
    }
  };
}

fetchNotifications();
connectWebSocket();
</script>
</body></html>`;

// The support-desk seed's admin dashboard: socket.io-client with its default transports
// (long-polling first, then the upgrade to WebSocket). `events` keeps what the socket saw.
const DASHBOARD_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Support desk: admin</title></head>
<body>
<p id="status">connecting</p>
<h2>New tickets</h2><ul id="tickets"></ul>
<h2>Notifications</h2><ul id="notifications"></ul>
<script src="/socket.io.js"></script>
<script>
const params = new URLSearchParams(location.search);
const events = [];
const adminSocket = io(params.get("api") + "/admin", { auth: { token: params.get("token") } });
const add = (list, text) => {
  const li = document.createElement("li");
  li.textContent = text;
  document.getElementById(list).append(li);
};
adminSocket.on("connect", () => {
  events.push({ event: "connect", transport: adminSocket.io.engine.transport.name });
  document.getElementById("status").textContent = "connected";
});
// The Engine.IO connection under the socket: which transport it opened with, and the upgrade.
adminSocket.io.engine.on("open", () => events.push({ event: "open", transport: adminSocket.io.engine.transport.name }));
adminSocket.io.engine.on("upgrade", (transport) => events.push({ event: "upgrade", transport: transport.name }));
adminSocket.on("connect_error", (error) => {
  events.push({ event: "connect_error", message: error.message });
  document.getElementById("status").textContent = "error: " + error.message;
});
adminSocket.on("new_ticket", (ticket) => {
  events.push({ event: "new_ticket", data: ticket });
  add("tickets", ticket.subject);
});
adminSocket.on("new_notification", (notification) => {
  events.push({ event: "new_notification", data: notification });
  add("notifications", notification.title);
});
</script>
</body></html>`;

const SOCKET_IO_JS = readFileSync(createRequire(import.meta.url).resolve("socket.io-client/dist/socket.io.js"));

const FILES = {
  "/bell.html": ["text/html; charset=utf-8", BELL_PAGE],
  "/dashboard.html": ["text/html; charset=utf-8", DASHBOARD_PAGE],
  "/socket.io.js": ["text/javascript; charset=utf-8", SOCKET_IO_JS],
};

/** Serves FILES on `origin`'s port; fails clearly when the port is taken. */
function serve(origin) {
  const { hostname, port } = new URL(origin);
  const server = createServer((req, res) => {
    const file = FILES[new URL(req.url, origin).pathname];
    res.writeHead(file ? 200 : 404, { "content-type": file ? file[0] : "text/plain", "cache-control": "no-store" });
    res.end(file ? file[1] : "not found");
  });
  return new Promise((resolve, reject) => {
    server.once("error", (e) =>
      reject(
        e.code === "EADDRINUSE"
          ? new Error(`port ${port} is taken: this test serves the page of origin ${origin} there; stop what listens on ${hostname}:${port}`)
          : e,
      ),
    );
    server.listen(Number(port), hostname, () => resolve(server));
  });
}

let browser;
const servers = [];
before(async () => {
  for (const origin of [BELL_ORIGIN, DASHBOARD_ORIGIN, FOREIGN_ORIGIN]) servers.push(await serve(origin));
  browser = await chromium.launch({
    executablePath: process.env.HERALD_CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

// ---------------------------------------------------------------------------------------------
// Helpers (node side)
// ---------------------------------------------------------------------------------------------
const uid = () => `origins-${Math.random().toString(36).slice(2, 10)}`;

async function devToken(query) {
  const res = await fetch(`${BASE}/api/dev/token?${new URLSearchParams(query)}`);
  assert.equal(res.status, 200, "development tokens are on in the test stack");
  return (await res.json()).token;
}

async function publishCall(path, body) {
  const token = await devToken({ sub: "origins-publisher", scope: "publish" });
  return fetch(`${BASE}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Publishes a notification to `audience` ({recipients} or {roles}); returns it. */
async function publish(audience, title) {
  const res = await publishCall("/api/notifications", { type: "review_due", priority: "high", title, message: `About ${title}`, ...audience });
  assert.equal(res.status, 201);
  return (await res.json()).notification;
}

/** The user's whole inbox, read from node (no Origin: not subject to CORS). */
async function inbox(token) {
  const res = await fetch(`${BASE}/api/notifications?limit=100`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  return res.json();
}

/** The CORS preflight a browser on `origin` sends before `method path` with these headers. */
async function preflight(origin, method, path, headers) {
  const res = await fetch(`${BASE}${path}`, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": method, "access-control-request-headers": headers },
  });
  return { status: res.status, allowOrigin: res.headers.get("access-control-allow-origin") };
}

/** Status of a WebSocket handshake from `origin` (node's fetch cannot upgrade: raw http). */
function wsHandshakeStatus(origin, token) {
  const url = new URL(`${BASE}/api/notifications/ws?token=${encodeURIComponent(token)}`);
  return new Promise((resolve, reject) => {
    const req = request(url, {
      headers: { origin, connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" },
      timeout: WAIT,
    });
    req.on("upgrade", (res, socket) => (socket.destroy(), resolve(res.statusCode)));
    req.on("response", (res) => (res.resume(), resolve(res.statusCode)));
    req.on("timeout", () => req.destroy(new Error("no answer to the WebSocket handshake")));
    req.on("error", reject);
    req.end();
  });
}

/** `promise`, or a failure naming `what` after WAIT. */
function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${WAIT} ms waiting for ${what}`)), WAIT);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Opens `file` from `origin` in a fresh context, with the stack's origin and a token;
 * `watch(page)` runs before the page loads. */
async function openPage(origin, file, token, watch = () => {}) {
  const context = await browser.newContext();
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  if (process.env.HERALD_E2E_DEBUG) page.on("console", (m) => console.log(`[${origin}${file}] ${m.text()}`));
  watch(page);
  await page.goto(`${origin}${file}?${new URLSearchParams({ api: BASE, token })}`);
  return { context, page };
}

/** Waits until the bell page has a `call` answer (or failure) beyond the first `seen`; returns it. */
async function nextCall(page, call, seen) {
  const handle = await page.waitForFunction(
    ([call, seen]) => calls.filter((c) => c.call === call)[seen],
    [call, seen],
  );
  return handle.jsonValue();
}
const badge = (page) => page.locator("#badge").textContent();

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------
test(`the performance-management bell works from ${BELL_ORIGIN}: live WebSocket, inbox, mark read, delete`, async () => {
  // What the browser will ask before each call; a clear failure here beats "Failed to fetch".
  for (const [method, path, headers] of [
    ["GET", "/api/notifications?limit=10&unread_only=true", "authorization"],
    ["PUT", "/api/notifications/x/read", "authorization,content-type"],
    ["DELETE", "/api/notifications/x", "authorization"],
  ]) {
    const answer = await preflight(BELL_ORIGIN, method, path, headers);
    assert.equal(answer.allowOrigin, BELL_ORIGIN, `the preflight of ${method} ${path} from ${BELL_ORIGIN} allows it (status ${answer.status}); is it in CORS_ALLOWED_ORIGINS?`);
  }

  const user = uid();
  const token = await devToken({ sub: user });
  const { context, page } = await openPage(BELL_ORIGIN, "/bell.html", token);

  // On load: the (empty) unread inbox over REST, and the WebSocket greets.
  const first = await nextCall(page, "list", 0);
  assert.equal(first.error, undefined, `the inbox loads from ${BELL_ORIGIN}`);
  assert.equal(first.status, 200);
  assert.equal(first.body.unread_count, 0);
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected");
  const hello = await page.evaluate(() => received.find((m) => m.type === "connection_established"));
  assert.equal(hello.user_id, user);

  // Published now, it arrives live over the WebSocket: in the list, and the badge counts it.
  const n = await publish({ recipients: [user] }, "Quarterly review due");
  await page.locator(`#list li[data-id="${n.id}"] .title`, { hasText: "Quarterly review due" }).waitFor();
  assert.equal(await badge(page), "1");
  const live = await page.evaluate(() => received.find((m) => m.type === "new_notification"));
  assert.equal(live.notification.id, n.id);

  // A refetch over REST lists it, with unread_count.
  await page.getByRole("button", { name: /Notifications/ }).click();
  const list = await nextCall(page, "list", 1);
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.notifications.map((x) => x.id), [n.id]);
  assert.equal(list.body.unread_count, 1);
  assert.equal(await badge(page), "1");

  // Mark read (PUT, with Content-Type: a preflighted request): 200, the badge drops, and the
  // WebSocket says marked_read.
  await page.locator(`#list li[data-id="${n.id}"]`).getByRole("button", { name: "Mark read" }).click();
  const read = await nextCall(page, "read", 0);
  assert.equal(read.error, undefined, `PUT .../read from ${BELL_ORIGIN} is allowed`);
  assert.equal(read.status, 200);
  assert.equal(read.body.is_read, true);
  await page.waitForFunction(() => document.getElementById("badge").textContent === "0");
  await page.waitForFunction((id) => received.some((m) => m.type === "marked_read" && m.notification_id === id), n.id);

  // Delete: 200 with a JSON message, and it leaves the list.
  await page.locator(`#list li[data-id="${n.id}"]`).getByRole("button", { name: "Delete" }).click();
  const deleted = await nextCall(page, "delete", 0);
  assert.equal(deleted.error, undefined, `DELETE from ${BELL_ORIGIN} is allowed`);
  assert.equal(deleted.status, 200);
  assert.deepEqual(deleted.body, { message: "Notification deleted successfully" });
  await page.locator(`#list li[data-id="${n.id}"]`).waitFor({ state: "detached" });

  // A refetch no longer lists it, and it is gone from the whole inbox, not just the unread.
  await page.getByRole("button", { name: /Notifications/ }).click();
  const refetched = await nextCall(page, "list", 2);
  assert.equal(refetched.status, 200);
  assert.deepEqual(refetched.body.notifications, []);
  assert.equal(refetched.body.unread_count, 0);
  const all = await inbox(token);
  assert.ok(!all.notifications.some((x) => x.id === n.id), "deleted for good");
  assert.deepEqual(await page.evaluate(() => socketEvents), ["open"], "the WebSocket stayed open throughout");
  await context.close();
});

test(`the support-desk dashboard's socket.io-client works from ${DASHBOARD_ORIGIN}: polling, upgrade, /admin events`, async () => {
  const token = await devToken({ sub: uid(), roles: "admin" });
  const { context, page } = await openPage(DASHBOARD_ORIGIN, "/dashboard.html", token);
  const seen = () => page.evaluate(() => events);

  // It connects over long-polling (cross-origin XHR), then upgrades to WebSocket.
  await page.waitForFunction(() => adminSocket.connected, null).catch(async (e) => {
    throw new Error(`the socket did not connect from ${DASHBOARD_ORIGIN}: ${JSON.stringify(await seen())}`, { cause: e });
  });
  assert.equal((await seen()).find((e) => e.event === "open").transport, "polling", "default transports: polling first");
  await page.waitForFunction(() => events.some((e) => e.event === "upgrade"));
  assert.equal(await page.evaluate(() => adminSocket.io.engine.transport.name), "websocket");
  assert.deepEqual((await seen()).find((e) => e.event === "upgrade"), { event: "upgrade", transport: "websocket" });

  // A notification to the admins arrives as new_notification.
  const n = await publish({ roles: ["admin"] }, "Escalated: printer on fire");
  await page.locator("#notifications li", { hasText: "Escalated: printer on fire" }).waitFor();
  const got = (await seen()).find((e) => e.event === "new_notification");
  assert.equal(got.data.id, n.id);

  // A live event to the admins arrives as new_ticket, with its data.
  const ticket = { id: uid(), subject: "VPN is down", priority: "urgent" };
  const res = await publishCall("/api/events", { event: "new_ticket", data: ticket, roles: ["admin"] });
  assert.equal(res.status, 202);
  await page.locator("#tickets li", { hasText: "VPN is down" }).waitFor();
  assert.deepEqual((await seen()).find((e) => e.event === "new_ticket").data, ticket);
  assert.ok(!(await seen()).some((e) => e.event === "connect_error"), "no connect_error on the way");
  await context.close();
});

test(`a page from ${FOREIGN_ORIGIN} is refused on REST, the WebSocket and Socket.IO`, async () => {
  const user = uid();
  const token = await devToken({ sub: user, roles: "admin" });
  const n = await publish({ recipients: [user] }, "Not for other sites");

  // What the servers answer that origin (node sends the Origin header a browser would).
  const answer = await preflight(FOREIGN_ORIGIN, "GET", "/api/notifications?limit=10&unread_only=true", "authorization");
  assert.equal(answer.allowOrigin, null, `the preflight from ${FOREIGN_ORIGIN} carries no Access-Control-Allow-Origin (status ${answer.status})`);
  assert.equal(await wsHandshakeStatus(FOREIGN_ORIGIN, token), 403, "the WebSocket handshake is refused");
  const polling = await fetch(`${BASE}/socket.io/?EIO=4&transport=polling`, { headers: { origin: FOREIGN_ORIGIN } });
  assert.equal(polling.status, 403, "the Socket.IO handshake is refused");
  assert.equal(polling.headers.get("access-control-allow-origin"), null);

  // The bell, with a valid token: the inbox fetch fails (CORS), the WebSocket never opens.
  let handshakeError;
  const bell = await openPage(FOREIGN_ORIGIN, "/bell.html", token, (page) => {
    handshakeError = new Promise((resolve) => page.on("websocket", (ws) => ws.on("socketerror", resolve)));
  });
  const list = await nextCall(bell.page, "list", 0);
  assert.equal(list.status, undefined, "the page never sees the answer");
  assert.match(list.error, /TypeError: Failed to fetch/);
  await bell.page.waitForFunction(() => socketEvents.includes("close"));
  const wsEvents = await bell.page.evaluate(() => socketEvents);
  assert.ok(wsEvents.includes("error") && !wsEvents.includes("open"), `error and close, never open (${wsEvents})`);
  assert.equal(await bell.page.locator("#status").textContent(), "disconnected");
  assert.match(await within(handshakeError, "the browser's WebSocket handshake error"), /Unexpected response code: 403/);

  // Nor may it change anything: the PUT is stopped at its preflight and never reaches the api.
  await bell.page.evaluate((id) => markAsRead(id), n.id);
  const read = await nextCall(bell.page, "read", 0);
  assert.match(read.error, /TypeError: Failed to fetch/);
  assert.equal((await inbox(token)).notifications.find((x) => x.id === n.id).is_read, false, "still unread");
  await bell.context.close();

  // socket.io-client gets connect_error and never connects.
  const dashboard = await openPage(FOREIGN_ORIGIN, "/dashboard.html", token);
  await dashboard.page.waitForFunction(() => events.some((e) => e.event === "connect_error"));
  const sioEvents = await dashboard.page.evaluate(() => (adminSocket.close(), events));
  assert.ok(!sioEvents.some((e) => e.event === "connect"), `never connected (${JSON.stringify(sioEvents)})`);
  assert.equal(await dashboard.page.evaluate(() => adminSocket.connected), false);
  await dashboard.context.close();
});
