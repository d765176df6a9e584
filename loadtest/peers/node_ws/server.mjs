// Reference peer for Herald's benchmark: a minimal Node `ws` server (ws 8.x on node's http
// server), one process, no Redis: the fastest common JavaScript baseline, measured beside Herald
// and the seeds' stacks. It speaks fastapi_ws's protocol (the performance-management seed's):
//   - GET /api/notifications/ws?token=<HS256 JWT>: a bad or missing token is refused at the
//     upgrade with HTTP 401; then connection_established, text "ping" -> "pong",
//     "mark_read:<id>" -> marked_read (nothing stored)
//   - POST /api/events on the same port: Herald's live-event contract, sent as
//     {"type":"event",...} to every matching socket; roles come from the token's `roles` claim,
//     kept per socket
//   - POST /api/notifications: new_notification to every socket of the audience, storing nothing
// Each message is serialized once per POST and written to every socket as the same buffer;
// permessage-deflate is off. Tokens are checked with node:crypto. See ../README.md.
//
//   node server.mjs --port 8034        # or env PORT; HERALD_JWT_SECRET
import http from "node:http";
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { WebSocketServer } from "ws";

const argPort = process.argv.indexOf("--port");
const port = Number(argPort > 0 ? process.argv[argPort + 1] : process.env.PORT || 8034);
const secret = process.env.HERALD_JWT_SECRET || "herald-dev-secret-change-me";
const EVENT_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const ROLE_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const WS_PATH = "/api/notifications/ws";

// HS256 only: header.payload signed with the secret; exp and sub required, nbf honoured, 5 s of
// skew. Returns the claims, or null.
function verify(token) {
  try {
    const parts = typeof token === "string" ? token.split(".") : [];
    if (parts.length !== 3) return null;
    const [head, body, sig] = parts;
    if (JSON.parse(Buffer.from(head, "base64url").toString()).alg !== "HS256") return null;
    const want = createHmac("sha256", secret).update(`${head}.${body}`).digest();
    const got = Buffer.from(sig, "base64url");
    if (got.length !== want.length || !timingSafeEqual(got, want)) return null;
    const claims = JSON.parse(Buffer.from(body, "base64url").toString());
    const now = Date.now() / 1000;
    if (typeof claims.exp !== "number" || claims.exp < now - 5) return null;
    if (typeof claims.nbf === "number" && claims.nbf > now + 5) return null;
    if (typeof claims.sub !== "string" || !claims.sub) return null;
    return claims;
  } catch {
    return null;
  }
}

// Open sockets by user id (the seed's shape) and by role; every socket carries its userId and
// roles. `all` is every open socket, for broadcasts.
const byUser = new Map();
const byRole = new Map();
const all = new Set();

function add(table, key, ws) {
  const set = table.get(key);
  if (set) set.add(ws);
  else table.set(key, new Set([ws]));
}

function remove(table, key, ws) {
  const set = table.get(key);
  if (set && set.delete(ws) && set.size === 0) table.delete(key);
}

// The sockets of an audience, each once.
function sockets({ ids, roles, everyone }) {
  if (everyone) return all;
  const found = new Set();
  for (const id of ids) for (const ws of byUser.get(id) ?? []) found.add(ws);
  for (const role of roles) for (const ws of byRole.get(role) ?? []) found.add(ws);
  return found;
}

// One JSON encoding and one buffer per message, written to every socket as a text frame.
function send(targets, message) {
  const buf = Buffer.from(JSON.stringify(message));
  for (const ws of targets) if (ws.readyState === 1) ws.send(buf, { binary: false });
}

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false });

function refuse(socket, status, reason, detail) {
  socket.on("error", () => socket.destroy());
  const body = JSON.stringify({ detail });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function onUpgrade(req, socket, head) {
  const q = req.url.indexOf("?");
  if ((q < 0 ? req.url : req.url.slice(0, q)) !== WS_PATH) return refuse(socket, 404, "Not Found", "Not Found");
  const claims = verify(q < 0 ? null : new URLSearchParams(req.url.slice(q + 1)).get("token"));
  if (!claims) return refuse(socket, 401, "Unauthorized", "invalid or missing token");
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.userId = claims.sub;
    ws.roles = Array.isArray(claims.roles) ? claims.roles.filter((r) => typeof r === "string") : [];
    add(byUser, ws.userId, ws);
    for (const role of ws.roles) add(byRole, role, ws);
    all.add(ws);
    ws.on("error", () => {}); // "close" follows
    ws.on("close", () => {
      all.delete(ws);
      remove(byUser, ws.userId, ws);
      for (const role of ws.roles) remove(byRole, role, ws);
    });
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      if (text === "ping") ws.send("pong");
      else if (text.startsWith("mark_read:"))
        ws.send(JSON.stringify({ type: "marked_read", notification_id: text.slice("mark_read:".length) }));
    });
    ws.send(JSON.stringify({ type: "connection_established", message: "Connected to notification service", user_id: ws.userId }));
  });
}

function reply(res, status, value) {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
}

// {ids, roles, everyone} from Herald's audience fields (exactly one of them), or an error string.
function audience(body) {
  const given = ["recipients", "roles", "broadcast"].filter(
    (k) => body[k] !== undefined && body[k] !== null && body[k] !== false && !(Array.isArray(body[k]) && body[k].length === 0),
  );
  if (given.length !== 1) return "exactly one of recipients, roles, broadcast: true";
  if (given[0] === "recipients") {
    const list = Array.isArray(body.recipients) ? body.recipients : [null];
    const ids = [...new Set(list.map((r) => (r && typeof r === "object" ? r.id : r)))];
    if (!ids.every((i) => typeof i === "string" && i)) return "recipients: ids (strings) or {id}";
    return { ids, roles: [], everyone: false };
  }
  if (given[0] === "roles") {
    const roles = body.roles;
    if (!Array.isArray(roles) || !roles.every((r) => typeof r === "string" && ROLE_RE.test(r)))
      return "roles: names of [A-Za-z0-9_.-]{1,64}";
    return { ids: [], roles, everyone: false };
  }
  return { ids: [], roles: [], everyone: true };
}

// POST /api/events: 202 {"channels": n}, n = recipients + roles, or 1 for a broadcast.
function publishEvent(body, res) {
  const { event, data = {} } = body;
  if (typeof event !== "string" || !EVENT_RE.test(event)) return reply(res, 422, { detail: "event: 1..64 characters of [A-Za-z0-9_.:-]" });
  if (data === null || typeof data !== "object" || Array.isArray(data)) return reply(res, 422, { detail: "data must be an object" });
  const who = audience(body);
  if (typeof who === "string") return reply(res, 422, { detail: who });
  send(sockets(who), { type: "event", event, data });
  reply(res, 202, { channels: who.ids.length + who.roles.length + (who.everyone ? 1 : 0) });
}

// POST /api/notifications: new_notification to the audience's sockets; nothing is stored.
function createNotification(body, res) {
  const who = audience(body);
  if (typeof who === "string") return reply(res, 422, { detail: who });
  const title = body.title;
  if (typeof body.type !== "string" || typeof title !== "string" || !title.trim())
    return reply(res, 422, { detail: "type and title are required" });
  const notification = {
    id: randomUUID(),
    type: body.type,
    priority: "priority" in body ? body.priority : "medium",
    title: title.trim(),
    message: "message" in body ? body.message : "",
    action_url: body.action_url ?? null,
    data: body.data || {},
    triggered_by_name: null,
    created_at: new Date().toISOString(),
    is_read: false,
  };
  send(sockets(who), { type: "new_notification", notification });
  const kind = who.ids.length ? "users" : who.roles.length ? "roles" : "broadcast";
  reply(res, 201, { id: notification.id, audience: kind, recipient_count: who.ids.length, notification });
}

const publishers = new Map([
  ["/api/events", publishEvent],
  ["/api/notifications", createNotification],
]);

// Any Authorization is accepted on the publish endpoints: the peers measure delivery, not the
// publisher's check.
function onRequest(req, res) {
  const path = req.url.split("?")[0];
  if (req.method === "GET" && path === "/healthz") return reply(res, 200, { status: "ok" });
  if (req.method === "GET" && path === "/api/notifications/connection-stats")
    return reply(res, 200, { active_users: byUser.size, total_connections: all.size });
  const handler = req.method === "POST" && publishers.get(path);
  if (!handler) return reply(res, 404, { detail: "Not Found" });
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString());
    } catch {
      return reply(res, 422, { detail: "body must be a JSON object" });
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) return reply(res, 422, { detail: "body must be a JSON object" });
    handler(body, res);
  });
}

const server = http.createServer(onRequest);
server.on("upgrade", onUpgrade);
server.listen(port, "127.0.0.1", () => console.log(`node_ws peer on http://127.0.0.1:${port}`));
