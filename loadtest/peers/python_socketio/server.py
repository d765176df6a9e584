"""Reference peer for Herald's benchmark: the support-desk seed's stack.

python-socketio AsyncServer (ASGI, under uvicorn, one process) with AsyncRedisManager, a FastAPI
app beside it as in the seed's main.py, and:
  - namespace /user: any valid token; the socket joins room user_<sub>
  - namespace /<role> (the seed's /admin, and any other role the load generator makes up):
    the token's `roles` claim must contain <role>
  - POST /api/events: Herald's publish contract for live events, emitted through the Redis
    manager (so even one process goes through Redis, as the seed's does)
The token comes in the handshake `auth: {token}` (or ?token=) and is an HS256 JWT signed with
HERALD_JWT_SECRET. See ../README.md for the exact protocol.

    python server.py --port 8031        # or env PORT; REDIS_URL, HERALD_JWT_SECRET
"""

import argparse
import os
import re
from urllib.parse import parse_qs

import jwt
import socketio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SECRET = os.environ.get("HERALD_JWT_SECRET", "herald-dev-secret-change-me")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
EVENT_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
ROLE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=socketio.AsyncRedisManager(REDIS_URL),
    cors_allowed_origins="*",
    namespaces="*",  # role namespaces are not known in advance; refused below unless allowed
)


def claims_from(environ, auth):
    """The verified claims of the handshake's token, or ConnectionRefusedError."""
    token = (auth or {}).get("token") if isinstance(auth, dict) else None
    if not token:
        token = (parse_qs(environ.get("QUERY_STRING", "")).get("token") or [None])[0]
    if not token:
        raise socketio.exceptions.ConnectionRefusedError("missing token")
    try:
        return jwt.decode(token, SECRET, algorithms=["HS256"], leeway=5,
                          options={"require": ["exp", "sub"]})
    except jwt.InvalidTokenError as exc:
        raise socketio.exceptions.ConnectionRefusedError(f"invalid token: {exc}")


@sio.on("connect", namespace="/user")
async def user_connect(sid, environ, auth):
    claims = claims_from(environ, auth)
    await sio.enter_room(sid, f"user_{claims['sub']}", namespace="/user")


@sio.on("connect", namespace="*")
async def role_connect(namespace, sid, environ, auth):
    # Every namespace but /user: /admin in the seed, /<role> in general.
    role = namespace.lstrip("/")
    if not ROLE_RE.match(role):
        raise socketio.exceptions.ConnectionRefusedError("connect to /user or /<role>")
    claims = claims_from(environ, auth)
    roles = claims.get("roles") or []
    if not isinstance(roles, list) or role not in roles:
        raise socketio.exceptions.ConnectionRefusedError(f"namespace {namespace} needs the role '{role}'")


api = FastAPI(title="python-socketio peer")


def unprocessable(detail):
    return JSONResponse({"detail": detail}, status_code=422)


@api.get("/healthz")
async def healthz():
    return {"status": "ok"}


@api.post("/api/events", status_code=202)
async def publish_event(request: Request):
    # Any Authorization is accepted: the peers measure delivery, not the publisher's check.
    try:
        body = await request.json()
    except ValueError:
        return unprocessable("body is not JSON")
    if not isinstance(body, dict):
        return unprocessable("body must be an object")
    event, data = body.get("event"), body.get("data", {})
    if not isinstance(event, str) or not EVENT_RE.match(event):
        return unprocessable("event: 1..64 characters of [A-Za-z0-9_.:-]")
    if not isinstance(data, dict):
        return unprocessable("data must be an object")
    audiences = [k for k in ("recipients", "roles", "broadcast") if body.get(k) not in (None, False, [])]
    if len(audiences) != 1:
        return unprocessable("exactly one of recipients, roles, broadcast: true")

    if audiences[0] == "recipients":
        ids = [r.get("id") if isinstance(r, dict) else r for r in body["recipients"]]
        if not all(isinstance(i, str) and i for i in ids):
            return unprocessable("recipients: ids (strings) or {id}")
        targets = [("/user", f"user_{i}") for i in dict.fromkeys(ids)]
    elif audiences[0] == "roles":
        roles = body["roles"]
        if not isinstance(roles, list) or not all(isinstance(r, str) and ROLE_RE.match(r) for r in roles):
            return unprocessable("roles: names of [A-Za-z0-9_.-]{1,64}")
        targets = [(f"/{r}", None) for r in dict.fromkeys(roles)]
    else:
        # Every namespace: /user and the role namespaces that have sockets in this process
        # (one process here; with several, each would have to know every namespace).
        targets = [(ns, None) for ns in sorted((set(sio.manager.get_namespaces()) - {"/"}) | {"/user"})]

    for namespace, room in targets:
        await sio.emit(event, data, namespace=namespace, room=room)
    return {"channels": len(targets)}


app = socketio.ASGIApp(sio, other_asgi_app=api)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8031")))
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, log_level="warning", access_log=False)
