// Herald demo page: a bell with an unread badge, a dropdown inbox, toasts, connection status
// and a form that publishes a test notification. Uses herald.js and development tokens from
// the local stack (GET /api/dev/token, only when HERALD_DEV_TOKENS is on).
import { HeraldClient } from "/herald.js";

const user = new URLSearchParams(location.search).get("user") || "alice";
const $ = (id) => document.getElementById(id);
$("user").textContent = user;

async function devToken(query) {
  const res = await fetch(`/api/dev/token?${new URLSearchParams(query)}`);
  if (!res.ok) throw new Error("development tokens are off (HERALD_DEV_TOKENS)");
  return (await res.json()).token;
}

const herald = new HeraldClient({ token: () => devToken({ sub: user }) });
const items = new Map(); // id -> notification, newest first by seq
let unread = 0;

function kindClass(n) {
  const t = n.type || "";
  if (t === "new_ticket" || t.endsWith("_created") || t.endsWith("_assigned")) return "kind-new";
  if (t === "new_response") return "kind-response";
  return "kind-updated";
}

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function renderBadge() {
  const badge = $("badge");
  badge.hidden = unread <= 0;
  badge.textContent = unread > 99 ? "99+" : String(unread);
  $("bell").setAttribute("aria-label", `Notifications, ${unread} unread`);
}

function renderList() {
  const list = $("list");
  list.replaceChildren();
  const sorted = [...items.values()].sort((a, b) => b.seq - a.seq);
  for (const n of sorted) {
    const li = document.createElement("li");
    li.className = `item${n.is_read ? "" : " unread"}${n.priority === "urgent" ? " urgent" : ""}`;
    li.dataset.id = n.id;
    const title = Object.assign(document.createElement("div"), { className: "title", textContent: n.title });
    const body = Object.assign(document.createElement("div"), { textContent: n.message });
    const meta = Object.assign(document.createElement("div"), { className: "meta", textContent: `${n.type} · ${n.priority} · ${when(n.created_at)}` });
    const actions = Object.assign(document.createElement("div"), { className: "actions" });
    if (!n.is_read) {
      const read = Object.assign(document.createElement("button"), { type: "button", textContent: "Mark read" });
      read.setAttribute("aria-label", `Mark "${n.title}" as read`);
      read.addEventListener("click", () => herald.markRead(n.id).catch(console.error));
      actions.append(read);
    }
    const del = Object.assign(document.createElement("button"), { type: "button", textContent: "Delete" });
    del.setAttribute("aria-label", `Delete "${n.title}"`);
    del.addEventListener("click", () => herald.remove(n.id).catch(console.error));
    actions.append(del);
    li.append(title, body, meta, actions);
    list.append(li);
  }
  $("empty").hidden = items.size > 0;
  renderBadge();
}

async function load() {
  const page = await herald.list({ limit: 50 });
  items.clear();
  for (const n of page.notifications) items.set(n.id, n);
  unread = page.unread_count;
  renderList();
}

function toast(n) {
  const el = document.createElement("div");
  el.className = `toast ${kindClass(n)}${n.priority === "urgent" ? " urgent" : ""}`;
  el.setAttribute("role", n.priority === "urgent" ? "alert" : "status");
  const title = Object.assign(document.createElement("div"), { className: "title", textContent: n.title });
  const body = Object.assign(document.createElement("div"), { className: "body", textContent: n.message });
  const close = Object.assign(document.createElement("button"), { type: "button", className: "close", textContent: "×" });
  close.setAttribute("aria-label", "Dismiss");
  const remove = () => el.remove();
  close.addEventListener("click", remove);
  el.append(title, close, body);
  $("toasts").append(el);
  setTimeout(remove, 5000);
}

herald.addEventListener("notification", ({ detail }) => {
  const n = detail.notification;
  if (!items.has(n.id)) {
    items.set(n.id, n);
    if (!n.is_read) unread += 1;
  }
  renderList();
  if (detail.toast) {
    toast(n);
    herald.acknowledge(n.id);
  }
});
herald.addEventListener("read", ({ detail }) => {
  if (detail.all) {
    for (const n of items.values()) n.is_read = true;
    unread = 0;
  } else {
    const n = items.get(detail.id);
    if (n && !n.is_read) {
      n.is_read = true;
      unread = Math.max(0, unread - 1);
    } else if (!n) {
      load();
      return;
    }
  }
  renderList();
});
herald.addEventListener("deleted", ({ detail }) => {
  const n = items.get(detail.id);
  if (n) {
    if (!n.is_read) unread = Math.max(0, unread - 1);
    items.delete(detail.id);
  }
  renderList();
});
herald.addEventListener("refetch", () => load());
herald.addEventListener("status", ({ detail }) => {
  const s = $("status");
  const shared = !detail.leader && detail.state === "open";
  s.dataset.state = detail.state === "follower" ? "connecting" : detail.state;
  s.textContent = shared ? "Connected (shared with another tab)" : {
    connecting: "Connecting…",
    open: "Connected",
    follower: "Connecting…",
    reconnecting: "Reconnecting…",
    closed: "Offline",
  }[detail.state] ?? detail.state;
});

$("bell").addEventListener("click", () => {
  const panel = $("panel");
  panel.hidden = !panel.hidden;
  $("bell").setAttribute("aria-expanded", String(!panel.hidden));
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !$("panel").hidden) {
    $("panel").hidden = true;
    $("bell").setAttribute("aria-expanded", "false");
    $("bell").focus();
  }
});
$("mark-all").addEventListener("click", () => herald.markAllRead().catch(console.error));

$("send").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const token = await devToken({ sub: "demo-publisher", scope: "publish" });
  const res = await fetch("/api/notifications", {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ recipients: [user], type: f.get("type"), priority: f.get("priority"), title: f.get("title"), message: f.get("message") }),
  });
  $("sent").textContent = res.ok ? "Sent." : `Refused: ${res.status}`;
});

await load();
await herald.start();
globalThis.herald = herald; // for the end-to-end tests and the curious
