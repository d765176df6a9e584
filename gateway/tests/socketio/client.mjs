// Drives the real, unmodified socket.io-client 4.x for Herald's gateway tests.
//
// Usage: node client.mjs '<json options>'
//   {"url": "http://127.0.0.1:8000", "namespace": "/admin", "token": "...",
//    "tokenIn": "auth" | "query", "transports": ["polling"]}   (transports optional)
// Prints one JSON line per thing that happens: connect (with the transport in use), upgrade,
// event (name and payload), connect_error (message), disconnect (reason), reconnect.
// Stdin lines are commands (below). Exits when stdin closes.
import { io } from "socket.io-client";

const opts = JSON.parse(process.argv[2]);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const clientOpts = { reconnectionDelay: 200, reconnectionDelayMax: 1000, timeout: 5000 };
if (opts.transports) clientOpts.transports = opts.transports;
if (opts.tokenIn === "query") clientOpts.query = { token: opts.token };
else clientOpts.auth = { token: opts.token };

const socket = io(opts.url + (opts.namespace || "/"), clientOpts);
socket.on("connect", () => say({ kind: "connect", transport: socket.io.engine.transport.name }));
socket.io.engine?.on("upgrade", (t) => say({ kind: "upgrade", transport: t.name }));
socket.io.on("open", () => {
  socket.io.engine.on("upgrade", (t) => say({ kind: "upgrade", transport: t.name }));
});
socket.io.on("reconnect", (n) => say({ kind: "reconnect", attempt: n }));
socket.on("connect_error", (err) => say({ kind: "connect_error", message: err.message }));
socket.on("disconnect", (reason) => say({ kind: "disconnect", reason }));
socket.onAny((event, data) => say({ kind: "event", event, data }));

// Each stdin line is a command: {"emit": "<event>", "data": ...} emits it with an
// acknowledgement callback, whose answer is printed as {kind: "ack", event, data}.
let pending = "";
process.stdin.on("data", (chunk) => {
  pending += chunk;
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    socket.emit(cmd.emit, cmd.data, (answer) => say({ kind: "ack", event: cmd.emit, data: answer }));
  }
});
process.stdin.on("end", () => {
  socket.close();
  process.exit(0);
});
