// Socket.IO benchmark with the real socket.io-client: N sockets on one role namespace over
// WebSocket, the gateway's RSS per socket, then R broadcast events and deliveries per second of
// gateway CPU. Bounded: N sockets, R rounds, 60 s per round at most.
//
// node bench.mjs --gateway http://127.0.0.1:8011 --api http://127.0.0.1:8001 --pid <gateway pid>
//                --sockets 5000 --rounds 20 [--secret ...]
import { io } from "socket.io-client";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const gateway = arg("gateway", "http://127.0.0.1:8011");
const api = arg("api", "http://127.0.0.1:8001");
const pid = arg("pid");
const n = Number(arg("sockets", "2000"));
const rounds = Number(arg("rounds", "20"));
const secret = arg("secret", process.env.HERALD_JWT_SECRET || "herald-dev-secret-change-me");

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
function jwt(claims) {
  const head = b64({ alg: "HS256", typ: "JWT" }) + "." + b64({ ...claims, exp: Math.floor(Date.now() / 1000) + 3600 });
  return head + "." + createHmac("sha256", secret).update(head).digest("base64url");
}
const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
const cpuSecs = () => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
};

const role = "bench" + Date.now().toString(36);
const before = pid ? rssKiB() : null;
let received = 0;
const sockets = [];
const started = Date.now();
for (let i = 0; i < n; i += 200) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + 200); j++) {
    const s = io(`${gateway}/${role}`, { forceNew: true, transports: ["websocket"], reconnection: false, auth: { token: jwt({ sub: `sio-${j}`, roles: [role] }) } });
    s.on("tick", () => received++);
    sockets.push(s);
    batch.push(new Promise((ok, fail) => { s.once("connect", ok); s.once("connect_error", fail); }));
  }
  await Promise.all(batch);
}
const connectRate = n / ((Date.now() - started) / 1000);
await new Promise((r) => setTimeout(r, 3000));
const after = pid ? rssKiB() : null;
const perSocket = pid ? ((after - before) * 1024) / n : null;
console.log(`socketio hold: sockets=${n} connect_rate=${connectRate.toFixed(0)}/s rss_before=${before}KiB after=${after}KiB per_socket=${perSocket?.toFixed(0)} B`);

const publisher = jwt({ sub: "bench", scope: "publish" });
const cpu0 = pid ? cpuSecs() : 0;
const lat = [];
for (let r = 0; r < rounds; r++) {
  const target = received + n;
  const t0 = performance.now();
  const resp = await fetch(`${api}/api/events`, { method: "POST", headers: { authorization: `Bearer ${publisher}`, "content-type": "application/json" }, body: JSON.stringify({ event: "tick", roles: [role], data: { round: r } }) });
  if (resp.status !== 202) throw new Error(`event answered ${resp.status}`);
  const deadline = Date.now() + 60000;
  while (received < target && Date.now() < deadline) await new Promise((ok) => setImmediate(ok));
  if (received < target) throw new Error(`round ${r}: ${target - received} deliveries missing`);
  lat.push(performance.now() - t0);
}
const cpu = pid ? cpuSecs() - cpu0 : 0;
lat.sort((a, b) => a - b);
const deliveries = n * rounds;
console.log(`socketio fanout: sockets=${n} rounds=${rounds} last_recipient p50=${lat[Math.floor(rounds / 2)].toFixed(1)}ms max=${lat[rounds - 1].toFixed(1)}ms gateway_cpu=${cpu.toFixed(2)}s deliveries_per_cpu_s=${pid ? (deliveries / cpu).toFixed(0) : "n/a"}`);
console.log("RESULT " + JSON.stringify({ scenario: "socketio", sockets: n, connect_rate: connectRate, bytes_per_socket: perSocket, rounds, p50_ms: lat[Math.floor(rounds / 2)], gateway_cpu_s: cpu, deliveries_per_cpu_s: pid ? deliveries / cpu : null }));
for (const s of sockets) s.close();
process.exit(0);
