"""Celery app: worker and beat share it (celery -A refapp.worker ...)."""

import datetime
import socket
import time

import redis
from celery import Celery

from refapp import db, settings

app = Celery("refapp", broker=settings.redis_url(), backend=settings.redis_url())
app.conf.update(
    # The known pain: naive vs aware datetimes in the health task. The stack sets
    # both TZ and CELERY_TIMEZONE; an unset one stops the service (settings.required).
    timezone=settings.required("CELERY_TIMEZONE"),
    enable_utc=True,
    task_acks_late=True,
    # The role's app_celery_task_time_limit: the worker's stop grace period is at least this long.
    task_time_limit=int(settings.optional("CELERY_TASK_TIME_LIMIT", "300")),
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=3600,
    beat_schedule={
        "heartbeat": {"task": "refapp.worker.heartbeat", "schedule": 10.0},
    },
)
settings.required("TZ")

HEARTBEAT_KEY = "refapp:beat:heartbeat"


@app.task
def add(x: int, y: int) -> int:
    result = x + y
    with db.connect() as cur:
        cur.execute("INSERT INTO refapp_task_runs (task, result, hostname) VALUES (%s, %s, %s)",
                    ("add", str(result), socket.gethostname()))
    return result


@app.task
def heartbeat() -> str:
    """The periodic health task: an aware timestamp, stored in Redis with a TTL."""
    now = datetime.datetime.now(datetime.timezone.utc).astimezone()
    client = redis.Redis.from_url(settings.redis_url())
    client.set(HEARTBEAT_KEY, now.isoformat(), ex=300)
    client.incr(HEARTBEAT_KEY + ":count")
    return now.isoformat()



@app.task
def slow(tag: str, seconds: float) -> str:
    """A long task (the drain test): counts its starts in Redis, works, then writes its row."""
    client = redis.Redis.from_url(settings.redis_url())
    client.incr(f"refapp:slow:{tag}:starts")
    client.expire(f"refapp:slow:{tag}:starts", 3600)
    time.sleep(seconds)
    with db.connect() as cur:
        cur.execute("INSERT INTO refapp_task_runs (task, result, hostname) VALUES (%s, %s, %s)",
                    ("slow", tag, socket.gethostname()))
    return tag
