"""Worker-safe database access: a new connection per unit of work.

Through PgBouncer in transaction mode a connection must not carry session
state across transactions, and a Celery prefork child must never reuse its
parent's socket; connecting per request/task satisfies both.
"""

import contextlib

import psycopg2

from refapp import settings


@contextlib.contextmanager
def connect():
    conn = psycopg2.connect(settings.database_url(), connect_timeout=5,
                            application_name="refapp")
    try:
        with conn:
            with conn.cursor() as cur:
                yield cur
    finally:
        conn.close()


def ensure_schema() -> None:
    with connect() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS refapp_items ("
                    " id serial PRIMARY KEY, name text NOT NULL, created_at timestamptz DEFAULT now())")
        cur.execute("CREATE TABLE IF NOT EXISTS refapp_task_runs ("
                    " id serial PRIMARY KEY, task text NOT NULL, result text,"
                    " hostname text, ran_at timestamptz DEFAULT now())")
        cur.execute("INSERT INTO refapp_items (name) SELECT 'seed-' || g FROM generate_series(1, 3) g"
                    " WHERE NOT EXISTS (SELECT 1 FROM refapp_items)")
