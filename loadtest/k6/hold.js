// k6 mirror of `herald-loadtest hold`: VUS idle WebSocket connections for HOLD seconds, each
// checked for the greeting. k6 run -e HERALD_URL=http://127.0.0.1:8000 -e VUS=1000 hold.js
import ws from "k6/ws";
import { check } from "k6";
import { WS_BASE, token } from "./lib.js";

const VUS = Number(__ENV.VUS || 1000);
const HOLD = Number(__ENV.HOLD || 30);

export const options = {
  scenarios: { hold: { executor: "per-vu-iterations", vus: VUS, iterations: 1, maxDuration: `${HOLD + 60}s` } },
  thresholds: { checks: ["rate==1"] },
};

export default function () {
  const url = `${WS_BASE}/api/notifications/ws?token=${token(`k6-hold-${__VU}`)}`;
  const res = ws.connect(url, {}, (socket) => {
    socket.on("message", (text) => {
      const frame = JSON.parse(text);
      check(frame, { greeted: (f) => f.type === "connection_established" });
    });
    socket.setTimeout(() => socket.close(), HOLD * 1000);
  });
  check(res, { "upgraded (101)": (r) => r && r.status === 101 });
}
