// herald.js: Herald's browser client. An ES module with no dependencies.
//
// One WebSocket per browser for all tabs of an origin: the tab holding the Web Lock
// "herald:<user>" is the leader and owns the socket; it shares every message with the other
// tabs over a BroadcastChannel, and another tab takes over within moments when it closes.
// Reconnects with exponential backoff and full jitter, resumes with the last notification seen
// (`since`), refetches over REST when the server says so, refreshes its token over the socket
// before expiry, and drops duplicates.
//
//   import { HeraldClient } from "/herald.js";
//   const herald = new HeraldClient({ token: () => fetchMyToken() });
//   herald.addEventListener("notification", (e) => show(e.detail.notification));
//   herald.start();

/** Delay before reconnect attempt `attempt` (0-based): full jitter over a capped exponential. */
export function backoffDelay(attempt, { base = 500, cap = 30_000, random = Math.random } = {}) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** A bounded set of recently seen notification ids (oldest forgotten first). */
export class SeenIds {
  constructor(limit = 1000) {
    this.limit = limit;
    this.ids = new Set();
  }
  has(id) {
    return this.ids.has(id);
  }
  /** Adds `id`; false if it was already there (a duplicate). */
  add(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.limit) this.ids.delete(this.ids.values().next().value);
    return true;
  }
}

/** Where to resume from: the notification with the highest position (`seq`) seen so far. */
export class ResumePoint {
  constructor(storage = null, key = "herald:resume") {
    this.storage = storage;
    this.key = key;
    this.id = null;
    this.seq = -1;
    try {
      const saved = storage && JSON.parse(storage.getItem(key) || "null");
      if (saved && typeof saved.id === "string" && Number.isFinite(saved.seq)) Object.assign(this, saved);
    } catch {
      /* a corrupt entry is ignored */
    }
  }
  /** Records a notification; returns true when it moves the resume point forward. */
  see(notification) {
    const seq = Number(notification.seq);
    if (!Number.isFinite(seq) || seq <= this.seq) return false;
    this.id = notification.id;
    this.seq = seq;
    try {
      this.storage?.setItem(this.key, JSON.stringify({ id: this.id, seq: this.seq }));
    } catch {
      /* storage full or denied: resume from memory only */
    }
    return true;
  }
  reset() {
    this.id = null;
    this.seq = -1;
    try {
      this.storage?.removeItem(this.key);
    } catch {
      /* ignore */
    }
  }
  /** The `since` query value, or null when nothing was seen yet. */
  since() {
    return this.id;
  }
}

/** The `exp` (unix seconds) and `sub` of a JWT, without verifying it. */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return {};
  }
}

const STATES = ["idle", "connecting", "open", "reconnecting", "follower", "closed"];

export class HeraldClient extends EventTarget {
  /**
   * @param {object} o
   * @param {string|(() => string|Promise<string>)} o.token a JWT, or a function returning a fresh one
   * @param {string} [o.url] Herald's origin (default: this page's)
   * @param {boolean} [o.shareAcrossTabs] one socket for all tabs (default: when Web Locks exist)
   */
  constructor({ token, url = globalThis.location?.origin ?? "", shareAcrossTabs, pingEvery = 25_000, backoff = {} } = {}) {
    super();
    if (!token) throw new Error("HeraldClient needs a token");
    this.tokenSource = token;
    this.base = url.replace(/\/$/, "");
    this.share = shareAcrossTabs ?? (typeof navigator !== "undefined" && !!navigator.locks && typeof BroadcastChannel !== "undefined");
    this.pingEvery = pingEvery;
    this.backoffOptions = backoff;
    this.seen = new SeenIds();
    this.state = "idle";
    this.tabId = Math.random().toString(36).slice(2);
    this.ws = null;
    this.attempt = 0;
    this.timers = new Set();
    this.stopped = true;
    this.lastVisible = new Map(); // tab id -> when it was last visible (leader only)
  }

  async token() {
    return typeof this.tokenSource === "function" ? await this.tokenSource() : this.tokenSource;
  }

  setState(state) {
    if (!STATES.includes(state) || this.state === state) return;
    this.state = state;
    this.emit("status", { state, leader: this.isLeader === true });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  after(ms, fn) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  /** Connects (or joins the tab that is connected). */
  async start() {
    if (!this.stopped) return;
    this.stopped = false;
    const sub = tokenClaims(await this.token()).sub ?? "anonymous";
    this.resume = new ResumePoint(globalThis.localStorage ?? null, `herald:resume:${sub}`);
    if (this.pendingResume) this.resume.see(this.pendingResume);
    if (!this.share) {
      this.isLeader = true;
      this.connect();
      return;
    }
    this.channel = new BroadcastChannel(`herald:${sub}`);
    this.channel.onmessage = (e) => this.onTabMessage(e.data);
    this.setState("follower");
    this.channel.postMessage({ kind: "hello" });
    this.reportVisibility();
    this.onVisibility = () => this.reportVisibility();
    document.addEventListener("visibilitychange", this.onVisibility);
    globalThis.addEventListener?.("focus", this.onVisibility);
    // The lock is held for as long as this tab leads; closing the tab releases it.
    this.releaseLock = null;
    navigator.locks.request(`herald:${sub}`, () => {
      if (this.stopped) return undefined;
      this.isLeader = true;
      this.connect();
      return new Promise((resolve) => (this.releaseLock = resolve));
    });
  }

  stop() {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000);
      this.ws = null;
    }
    this.releaseLock?.();
    this.isLeader = false;
    this.channel?.close();
    if (this.onVisibility) document.removeEventListener("visibilitychange", this.onVisibility);
    this.setState("closed");
  }

  reportVisibility() {
    if (typeof document === "undefined" || document.visibilityState !== "visible") return;
    const msg = { kind: "visible", tab: this.tabId, at: Date.now() };
    if (this.isLeader) this.lastVisible.set(this.tabId, msg.at);
    this.channel?.postMessage(msg);
  }

  /** The tab that should show a toast: the one most recently visible. */
  toastTab() {
    let best = null;
    let at = -1;
    for (const [tab, when] of this.lastVisible) if (when > at) [best, at] = [tab, when];
    return best ?? this.tabId;
  }

  async connect() {
    if (this.stopped) return;
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let token;
    try {
      token = await this.token();
    } catch {
      return this.retry();
    }
    const wsBase = this.base.replace(/^http/, "ws");
    const since = this.resume.since();
    const url = `${wsBase}/api/notifications/ws?token=${encodeURIComponent(token)}${since ? `&since=${encodeURIComponent(since)}` : ""}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    let pong = Date.now();
    ws.onopen = () => {
      this.attempt = 0;
      const beat = () => {
        if (this.ws !== ws) return;
        if (Date.now() - pong > this.pingEvery * 2) return ws.close(4002, "no pong");
        ws.send("ping");
        this.after(this.pingEvery, beat);
      };
      this.after(this.pingEvery, beat);
      this.scheduleRefresh(token);
    };
    ws.onmessage = (e) => {
      if (e.data === "pong") {
        pong = Date.now();
        return;
      }
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch {
        return;
      }
      this.share && this.channel.postMessage({ kind: "frame", frame, toast: this.toastTab() });
      this.handle(frame, this.toastTab());
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (e.code === 4001) this.emit("expired", {});
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    this.setState("reconnecting");
    this.share && this.channel.postMessage({ kind: "status", state: "reconnecting" });
    const delay = backoffDelay(this.attempt++, this.backoffOptions);
    this.after(delay, () => this.connect());
  }

  /** Sends a fresh token over the socket a minute before the current one expires. */
  scheduleRefresh(token) {
    const exp = Number(tokenClaims(token).exp);
    if (!Number.isFinite(exp) || typeof this.tokenSource !== "function") return;
    const ms = Math.max(5_000, exp * 1000 - Date.now() - 60_000);
    this.after(ms, async () => {
      try {
        const fresh = await this.token();
        if (this.ws?.readyState === 1) this.ws.send(`auth:${fresh}`);
        this.scheduleRefresh(fresh);
      } catch {
        /* the server closes with 4001; the reconnect fetches a new token */
      }
    });
  }

  onTabMessage(msg) {
    if (!msg || typeof msg !== "object") return;
    if (msg.kind === "hello" && this.isLeader) this.channel.postMessage({ kind: "status", state: this.state });
    else if (msg.kind === "visible" && this.isLeader) this.lastVisible.set(msg.tab, msg.at);
    else if (msg.kind === "frame" && !this.isLeader) this.handle(msg.frame, msg.toast);
    else if (msg.kind === "status" && !this.isLeader) this.emit("status", { state: msg.state, leader: false });
    else if (msg.kind === "ack" && this.isLeader && this.ws?.readyState === 1) this.ws.send(`ack:${msg.id}`);
  }

  /** Turns a server frame into events; `toastTab` is the tab that should show it. */
  handle(frame, toastTab) {
    switch (frame.type) {
      case "connection_established":
        // The server greets once this socket's subscriptions are live: from now on nothing
        // published is missed.
        if (this.isLeader) {
          this.setState("open");
          this.share && this.channel.postMessage({ kind: "status", state: "open" });
        }
        return this.emit("connected", { userId: frame.user_id });
      case "new_notification": {
        const n = frame.notification;
        if (!n || !this.seen.add(n.id)) return; // a duplicate
        this.resume.see(n);
        return this.emit("notification", { notification: n, toast: toastTab === this.tabId });
      }
      case "marked_read":
        return this.emit("read", { id: frame.notification_id });
      case "marked_all_read":
        return this.emit("read", { all: true, count: frame.count });
      case "notification_deleted":
        return this.emit("deleted", { id: frame.notification_id });
      case "event":
        return this.emit("event", { event: frame.event, data: frame.data });
      case "refetch":
        return this.emit("refetch", { reason: frame.reason });
      case "error":
        return this.emit("servererror", { message: frame.message });
      default:
        return undefined;
    }
  }

  /** Tells the server a notification was displayed (it then counts as seen for email). */
  acknowledge(id) {
    if (this.isLeader && this.ws?.readyState === 1) this.ws.send(`ack:${id}`);
    else this.channel?.postMessage({ kind: "ack", id });
  }

  // ---- REST ---------------------------------------------------------------------------------

  async rest(method, path, body) {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { authorization: `Bearer ${await this.token()}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await res.json().catch(() => null);
    if (!res.ok) throw Object.assign(new Error(data?.detail?.toString?.() ?? `HTTP ${res.status}`), { status: res.status, detail: data?.detail });
    return data;
  }

  /**
   * `{notifications, total, unread_count, page, per_page}`, newest first. The first page of the
   * unfiltered inbox also sets where the socket resumes from: everything after what the page
   * just showed is replayed, so nothing published in between is missed.
   */
  async list({ skip = 0, limit = 20, unreadOnly = false, type, priority } = {}) {
    const q = new URLSearchParams({ skip, limit, unread_only: unreadOnly });
    if (type) q.set("notification_type", type);
    if (priority) q.set("priority", priority);
    const page = await this.rest("GET", `/api/notifications?${q}`);
    const newest = page.notifications[0];
    if (newest && skip === 0 && !unreadOnly && !type && !priority) {
      if (this.resume) this.resume.see(newest);
      else this.pendingResume = newest;
    }
    return page;
  }

  stats() {
    return this.rest("GET", "/api/notifications/stats");
  }

  markRead(id) {
    return this.rest("PUT", `/api/notifications/${encodeURIComponent(id)}/read`);
  }

  markAllRead() {
    return this.rest("PUT", "/api/notifications/mark-all-read");
  }

  remove(id) {
    return this.rest("DELETE", `/api/notifications/${encodeURIComponent(id)}`);
  }

  preferences() {
    return this.rest("GET", "/api/notifications/preferences");
  }

  savePreferences(update) {
    return this.rest("PUT", "/api/notifications/preferences", update);
  }
}
