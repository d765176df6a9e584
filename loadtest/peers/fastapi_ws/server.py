"""Reference peer for Herald's benchmark: the performance-management seed's stack.

FastAPI + uvicorn, one process, an in-memory connection manager (user id -> list of WebSockets)
as the seed's websocket_manager.py has; no Redis, as the seed has none:
  - GET /api/notifications/ws?token=<HS256 JWT>: greets with connection_established, answers
    text "ping" with "pong" and "mark_read:<id>" with marked_read
  - POST /api/notifications: sends new_notification to every socket of each recipient. The seed
    stores the notification in its database first; this peer stores nothing (keeping it in
    memory would only grow the process during a benchmark), so it measures the fan-out alone.
  - POST /api/events: Herald's live-event contract, sent as {"type":"event",...}; roles come
    from the token's `roles` claim, remembered per socket.
See ../README.md for the exact protocol.

    python server.py --port 8032        # or env PORT; HERALD_JWT_SECRET
"""

import argparse
import json
import os
import re
import uuid
from datetime import datetime, timezone

import jwt
import uvicorn
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect, status
from fastapi.responses import JSONResponse

SECRET = os.environ.get("HERALD_JWT_SECRET", "herald-dev-secret-change-me")
EVENT_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
ROLE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ConnectionManager:
    """Open sockets by user id (the seed's shape), and by role (for role events)."""

    def __init__(self):
        self.active_connections: dict[str, list[WebSocket]] = {}
        self.by_role: dict[str, list[WebSocket]] = {}
        self.roles_of: dict[WebSocket, list[str]] = {}

    def connect(self, user_id: str, roles: list[str], ws: WebSocket):
        self.active_connections.setdefault(user_id, []).append(ws)
        self.roles_of[ws] = roles
        for role in roles:
            self.by_role.setdefault(role, []).append(ws)

    def disconnect(self, user_id: str, ws: WebSocket):
        for key, table in [(user_id, self.active_connections)] + [(r, self.by_role) for r in self.roles_of.pop(ws, [])]:
            sockets = table.get(key, [])
            if ws in sockets:
                sockets.remove(ws)
            if not sockets:
                table.pop(key, None)

    def sockets(self, recipients=(), roles=(), everyone=False) -> list[WebSocket]:
        if everyone:
            return list(self.roles_of)
        found = {}  # a socket once, even when it matches twice
        for user_id in recipients:
            found.update(dict.fromkeys(self.active_connections.get(user_id, [])))
        for role in roles:
            found.update(dict.fromkeys(self.by_role.get(role, [])))
        return list(found)

    async def send(self, sockets: list[WebSocket], message: dict) -> int:
        # One socket after the other, as the seed's manager does; a socket that fails is
        # dropped by its own receive loop when it ends.
        text, sent = json.dumps(message), 0
        for ws in sockets:
            try:
                await ws.send_text(text)
                sent += 1
            except Exception:
                pass
        return sent


manager = ConnectionManager()
app = FastAPI(title="fastapi_ws peer")


def verify(token: str | None) -> dict | None:
    if not token:
        return None
    try:
        return jwt.decode(token, SECRET, algorithms=["HS256"], leeway=5, options={"require": ["exp", "sub"]})
    except jwt.InvalidTokenError:
        return None


@app.websocket("/api/notifications/ws")
async def notifications_ws(websocket: WebSocket, token: str | None = None):
    claims = verify(token)
    if claims is None:
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    user_id = claims["sub"]
    roles = [r for r in claims.get("roles") or [] if isinstance(r, str)]
    await websocket.accept()
    manager.connect(user_id, roles, websocket)
    try:
        await websocket.send_json({"type": "connection_established",
                                   "message": "Connected to notification service", "user_id": user_id})
        while True:
            text = await websocket.receive_text()
            if text == "ping":
                await websocket.send_text("pong")
            elif text.startswith("mark_read:"):
                # Nothing is stored here: acknowledge as the seed does, without a database.
                await websocket.send_json({"type": "marked_read", "notification_id": text[len("mark_read:"):]})
    except WebSocketDisconnect:
        pass
    finally:
        manager.disconnect(user_id, websocket)


def unprocessable(detail):
    return JSONResponse({"detail": detail}, status_code=422)


def audience(body: dict):
    """(recipient ids, roles, everyone) from Herald's audience fields, or an error string."""
    present = [k for k in ("recipients", "roles", "broadcast") if body.get(k) not in (None, False, [])]
    if len(present) != 1:
        return "exactly one of recipients, roles, broadcast: true"
    if present[0] == "recipients":
        ids = [r.get("id") if isinstance(r, dict) else r for r in body["recipients"]]
        if not all(isinstance(i, str) and i for i in ids):
            return "recipients: ids (strings) or {id}"
        return list(dict.fromkeys(ids)), [], False
    if present[0] == "roles":
        roles = body["roles"]
        if not isinstance(roles, list) or not all(isinstance(r, str) and ROLE_RE.match(r) for r in roles):
            return "roles: names of [A-Za-z0-9_.-]{1,64}"
        return [], roles, False
    return [], [], True


async def json_body(request: Request):
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.get("/api/notifications/connection-stats")
async def connection_stats():
    return {"active_users": len(manager.active_connections), "total_connections": len(manager.roles_of)}


@app.post("/api/notifications", status_code=201)
async def create_notification(request: Request):
    # Any Authorization is accepted: the peers measure delivery, not the publisher's check.
    body = await json_body(request)
    if body is None:
        return unprocessable("body must be a JSON object")
    who = audience(body)
    if isinstance(who, str):
        return unprocessable(who)
    title = body.get("title")
    if not isinstance(body.get("type"), str) or not isinstance(title, str) or not title.strip():
        return unprocessable("type and title are required")
    notification = {
        "id": str(uuid.uuid4()),
        "type": body["type"],
        "priority": body.get("priority", "medium"),
        "title": title.strip(),
        "message": body.get("message", ""),
        "action_url": body.get("action_url"),
        "data": body.get("data") or {},
        "triggered_by_name": None,
        "created_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "is_read": False,
    }
    sockets = manager.sockets(*who)
    await manager.send(sockets, {"type": "new_notification", "notification": notification})
    kind = "users" if who[0] else "roles" if who[1] else "broadcast"
    return {"id": notification["id"], "audience": kind, "recipient_count": len(who[0]), "notification": notification}


@app.post("/api/events", status_code=202)
async def publish_event(request: Request):
    body = await json_body(request)
    if body is None:
        return unprocessable("body must be a JSON object")
    event, data = body.get("event"), body.get("data", {})
    if not isinstance(event, str) or not EVENT_RE.match(event):
        return unprocessable("event: 1..64 characters of [A-Za-z0-9_.:-]")
    if not isinstance(data, dict):
        return unprocessable("data must be an object")
    who = audience(body)
    if isinstance(who, str):
        return unprocessable(who)
    await manager.send(manager.sockets(*who), {"type": "event", "event": event, "data": data})
    # "channels" as Herald counts them: one per recipient, per role, or the one broadcast.
    return {"channels": len(who[0]) + len(who[1]) + (1 if who[2] else 0)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8032")))
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, log_level="warning", access_log=False)
