"""Backend: FastAPI + WebSocket, every answer says which service gave it."""

import datetime
import hmac
import os
import socket
import time

import jwt
import redis
from fastapi import FastAPI, Header, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from refapp import db, settings
from refapp.worker import HEARTBEAT_KEY, add
from refapp.worker import app as celery_app

JWT_SECRET = settings.required("JWT_SECRET")
JWT_SECRET_PREVIOUS = settings.optional("JWT_SECRET_PREVIOUS")
JWT_EXPIRE_MINUTES = int(settings.required("JWT_EXPIRE_MINUTES"))
RATE_LIMIT = int(settings.optional("RATE_LIMIT_PER_MINUTE", "5"))
settings.required("TZ")
settings.required("CELERY_TIMEZONE")

REQUESTS = Counter("refapp_requests_total", "Requests served", ["endpoint"])
app = FastAPI(title="refapp backend", openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
_redis = redis.Redis.from_url(settings.redis_url(), socket_timeout=3)


def served(body: dict, status: int = 200) -> JSONResponse:
    body = {"service": "backend", "host": socket.gethostname(), **body}
    return JSONResponse(body, status_code=status)


@app.on_event("startup")
def startup() -> None:
    db.ensure_schema()


@app.get("/api/health")
def health():
    REQUESTS.labels("health").inc()
    checks = {}
    try:
        with db.connect() as cur:
            cur.execute("SELECT current_user, inet_server_port()")
            user, port = cur.fetchone()
        checks["database"] = "ok"
        checks["database_user"] = user
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        _redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    ok = checks["database"] == "ok" and checks["redis"] == "ok"
    return served(checks, 200 if ok else 503)


@app.get("/api/items")
def items():
    """The DB-backed endpoint the zero-downtime and rotation benches hammer."""
    REQUESTS.labels("items").inc()
    with db.connect() as cur:
        cur.execute("SELECT count(*) FROM refapp_items")
        count = cur.fetchone()[0]
    return served({"items": count})


@app.post("/api/items")
def add_item(name: str = "item"):
    """A write through the stack (the disaster-recovery test's timestamped rows): its id and commit time."""
    REQUESTS.labels("items_post").inc()
    with db.connect() as cur:
        cur.execute("INSERT INTO refapp_items (name) VALUES (%s) RETURNING id, extract(epoch FROM created_at)",
                    (name[:200],))
        item_id, created = cur.fetchone()
    return served({"id": item_id, "created_at": float(created)}, 201)


@app.get("/api/limited")
def limited(request: Request):
    """Rate limiter backed by Redis: a counter per client and minute, with a TTL."""
    REQUESTS.labels("limited").inc()
    client = request.headers.get("x-client-id") or (request.client.host if request.client else "?")
    window = int(time.time() // 60)
    key = f"ratelimit:{client}:{window}"
    pipe = _redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, 120)
    count, _ = pipe.execute()
    if count > RATE_LIMIT:
        return served({"limited": True, "count": count, "key": key}, 429)
    return served({"limited": False, "count": count, "key": key})


@app.post("/api/tasks")
def submit(x: int = 2, y: int = 3):
    REQUESTS.labels("tasks").inc()
    result = add.delay(x, y)
    return served({"task_id": result.id})


@app.get("/api/tasks/{task_id}")
def task_state(task_id: str):
    result = celery_app.AsyncResult(task_id)
    return served({"state": result.state, "result": result.result if result.successful() else None})


@app.get("/api/beat")
def beat():
    value = _redis.get(HEARTBEAT_KEY)
    count = _redis.get(HEARTBEAT_KEY + ":count")
    return served({"last": value.decode() if value else None, "count": int(count or 0)})


@app.post("/api/token")
def token(subject: str = "tester"):
    now = datetime.datetime.now(datetime.timezone.utc)
    claims = {"sub": subject, "iat": now, "exp": now + datetime.timedelta(minutes=JWT_EXPIRE_MINUTES)}
    return served({"token": jwt.encode(claims, JWT_SECRET, algorithm="HS256"),
                   "expires_in": JWT_EXPIRE_MINUTES * 60})


@app.get("/api/me")
def me(authorization: str = Header(default="")):
    raw = authorization.removeprefix("Bearer ").strip()
    for key in (k for k in (JWT_SECRET, JWT_SECRET_PREVIOUS) if k):
        try:
            claims = jwt.decode(raw, key, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            continue
        return served({"sub": claims["sub"], "previous_key": hmac.compare_digest(key, JWT_SECRET_PREVIOUS)})
    raise HTTPException(status_code=401, detail="invalid token")


@app.get("/metrics")
def metrics():
    return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)


@app.websocket("/ws")
async def ws(socket_: WebSocket):
    await socket_.accept()
    try:
        while True:
            message = await socket_.receive_text()
            await socket_.send_text(f"backend echo: {message}")
    except WebSocketDisconnect:
        return


@app.get("/api/whoami")
def whoami():
    return served({"pid": os.getpid()})
