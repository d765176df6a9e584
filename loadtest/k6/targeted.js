// k6 mirror of `herald-loadtest targeted`: USERS connected users; RATE notifications per second
// through the api, each to one user; a Trend of publish-to-receive time (from the send time in
// data.sent_ms). k6 run -e HERALD_URL=http://127.0.0.1:8000 -e RATE=500 -e SECONDS=10 targeted.js
import http from "k6/http";
import ws from "k6/ws";
import { check } from "k6";
import { Counter, Trend } from "k6/metrics";
import { BASE, WS_BASE, token } from "./lib.js";

const USERS = Number(__ENV.USERS || 200);
const RATE = Number(__ENV.RATE || 500);
const SECONDS = Number(__ENV.SECONDS || 10);
const latency = new Trend("publish_to_receive", true);
const received = new Counter("notifications_received");

export const options = {
  scenarios: {
    listeners: { executor: "per-vu-iterations", vus: USERS, iterations: 1, maxDuration: `${SECONDS + 30}s`, exec: "listen" },
    publishers: {
      executor: "constant-arrival-rate", rate: RATE, timeUnit: "1s", duration: `${SECONDS}s`,
      preAllocatedVUs: 50, startTime: "3s", exec: "publish",
    },
  },
  thresholds: { checks: ["rate==1"] },
};

export function listen() {
  ws.connect(`${WS_BASE}/api/notifications/ws?token=${token(`k6-user-${__VU}`)}`, {}, (socket) => {
    socket.on("message", (text) => {
      const frame = JSON.parse(text);
      if (frame.type === "new_notification") {
        latency.add(Date.now() - frame.notification.data.sent_ms);
        received.add(1);
      }
    });
    socket.setTimeout(() => socket.close(), (SECONDS + 10) * 1000);
  });
}

const publisher = token("k6-publisher", { scope: "publish" });

export function publish() {
  const user = `k6-user-${1 + Math.floor(Math.random() * USERS)}`;
  const res = http.post(
    `${BASE}/api/notifications`,
    JSON.stringify({ recipients: [user], type: "loadtest", title: "k6", message: "", data: { sent_ms: Date.now() } }),
    { headers: { authorization: `Bearer ${publisher}`, "content-type": "application/json" } },
  );
  check(res, { "published (201)": (r) => r.status === 201 });
}
