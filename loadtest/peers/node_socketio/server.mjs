// Reference peer for Herald's benchmark: Node socket.io 4.x with @socket.io/redis-adapter, one
// process, the support-desk seed's namespaces as a Node team would write them:
//   - /user: any valid token; the socket joins room user:<sub>
//   - /<role> (the seed's /admin, and any role the load generator makes up): the token's `roles`
//     claim must contain <role>
//   - POST /api/events on the same port (node's http server): Herald's publish contract for live
//     events, emitted through the Redis adapter
// The token comes in the handshake `auth: {token}` (or ?token=) and is an HS256 JWT signed with
// HERALD_JWT_SECRET, checked with node:crypto. See ../README.md for the exact protocol.
//
//   node server.mjs --port 8033        # or env PORT; REDIS_URL, HERALD_JWT_SECRET
import http from "node:http";
import { createHmac, timingSafeEqual } from "node:crypto";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const argPort = process.argv.indexOf("--port");
const port = Number(argPort > 0 ? process.argv[argPort + 1] : process.env.PORT || 8033);
const secret = process.env.HERALD_JWT_SECRET || "herald-dev-secret-change-me";
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const EVENT_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const ROLE_RE = /^[A-Za-z0-9_.-]{1,64}$/;

// HS256 only: header.payload signed with the secret; exp required, nbf honoured, 5 s of skew.
function verify(token) {
  const parts = typeof token === "string" ? token.split(".") : [];
  if (parts.length !== 3) throw new Error("invalid token: malformed");
  const [head, body, sig] = parts;
  const header = JSON.parse(Buffer.from(head, "base64url").toString());
  if (header.alg !== "HS256") throw new Error("invalid token: algorithm must be HS256");
  const want = createHmac("sha256", secret).update(`${head}.${body}`).digest();
  const got = Buffer.from(sig, "base64url");
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw new Error("invalid token: signature");
  const claims = JSON.parse(Buffer.from(body, "base64url").toString());
  const now = Date.now() / 1000;
  if (typeof claims.exp !== "number" || claims.exp < now - 5) throw new Error("token has expired");
  if (typeof claims.nbf === "number" && claims.nbf > now + 5) throw new Error("token is not yet valid");
  if (typeof claims.sub !== "string" || !claims.sub) throw new Error("invalid token: sub");
  return claims;
}

// Handshake middleware: the verified claims land in socket.data, or the connection is refused
// with connect_error {message}.
function authenticate(socket, next) {
  const token = socket.handshake.auth?.token ?? socket.handshake.query?.token;
  if (!token) return next(new Error("missing token"));
  try {
    socket.data.claims = verify(token);
    next();
  } catch (err) {
    next(new Error(err instanceof SyntaxError ? "invalid token: malformed" : err.message));
  }
}

function requireRole(socket, next) {
  const role = socket.nsp.name.slice(1);
  const roles = socket.data.claims.roles;
  if (Array.isArray(roles) && roles.includes(role)) next();
  else next(new Error(`namespace ${socket.nsp.name} needs the role '${role}'`));
}

function unprocessable(res, detail) {
  res.writeHead(422, { "content-type": "application/json" }).end(JSON.stringify({ detail }));
}

// POST /api/events. Any Authorization is accepted: the peers measure delivery, not the
// publisher's check.
function handleHttp(req, res) {
  const path = req.url.split("?")[0];
  if (req.method === "GET" && path === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
    return;
  }
  if (req.method !== "POST" || path !== "/api/events") {
    res.writeHead(404, { "content-type": "application/json" }).end('{"detail":"Not Found"}');
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString());
    } catch {
      return unprocessable(res, "body is not JSON");
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) return unprocessable(res, "body must be an object");
    const { event, data = {} } = body;
    if (typeof event !== "string" || !EVENT_RE.test(event)) return unprocessable(res, "event: 1..64 characters of [A-Za-z0-9_.:-]");
    if (data === null || typeof data !== "object" || Array.isArray(data)) return unprocessable(res, "data must be an object");
    const given = ["recipients", "roles", "broadcast"].filter(
      (k) => body[k] !== undefined && body[k] !== null && body[k] !== false && !(Array.isArray(body[k]) && body[k].length === 0),
    );
    if (given.length !== 1) return unprocessable(res, "exactly one of recipients, roles, broadcast: true");

    let channels;
    if (given[0] === "recipients") {
      const ids = [...new Set((Array.isArray(body.recipients) ? body.recipients : [null]).map((r) => (r && typeof r === "object" ? r.id : r)))];
      if (!ids.every((i) => typeof i === "string" && i)) return unprocessable(res, "recipients: ids (strings) or {id}");
      for (const id of ids) userNsp.to(`user:${id}`).emit(event, data);
      channels = ids.length;
    } else if (given[0] === "roles") {
      const roles = Array.isArray(body.roles) ? [...new Set(body.roles)] : [null];
      if (!roles.every((r) => typeof r === "string" && ROLE_RE.test(r))) return unprocessable(res, "roles: names of [A-Za-z0-9_.-]{1,64}");
      for (const role of roles) io.of(`/${role}`).emit(event, data);
      channels = roles.length;
    } else {
      // Every namespace: /user and each role namespace this process has (one process here).
      userNsp.emit(event, data);
      roleNsps.emit(event, data);
      channels = 1 + roleNsps.children.size;
    }
    res.writeHead(202, { "content-type": "application/json" }).end(JSON.stringify({ channels }));
  });
}

const pubClient = createClient({ url: redisUrl });
const subClient = pubClient.duplicate();
for (const c of [pubClient, subClient]) c.on("error", (err) => console.error("redis:", err.message));
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = http.createServer(handleHttp);
const io = new Server(httpServer, { adapter: createAdapter(pubClient, subClient), cors: { origin: "*" } });

// The default namespace is not part of the seed's protocol.
io.use((socket, next) => next(new Error("connect to /user or /<role>")));

const userNsp = io.of("/user");
userNsp.use(authenticate);
userNsp.on("connection", (socket) => socket.join(`user:${socket.data.claims.sub}`));

// Role namespaces are made on demand (by a connection or an emit) and inherit the middleware.
const roleNsps = io.of(/^\/[A-Za-z0-9_.-]{1,64}$/);
roleNsps.use(authenticate);
roleNsps.use(requireRole);

httpServer.listen(port, "127.0.0.1", () => console.log(`node_socketio peer on http://127.0.0.1:${port}`));
