"""Failover probe writer (scale-out verify, bench/failover): runs on a Patroni member with Debian's
python3-psycopg2 (a dependency of patroni).

    python3 failover_writer.py SECONDS < DSN

Inserts a row into failover_probe every 50 ms through the libpq DSN read from stdin (the password never
appears in a process list), reconnecting after each failure; after the first failure it stops once 20
rows are written again, or at the deadline. Prints JSON: each committed id and each failure with the
time.monotonic() at which its attempt started."""
import json
import sys
import time

import psycopg2

dsn, deadline = sys.stdin.readline().strip(), time.monotonic() + float(sys.argv[1])
committed, failures, conn, after = [], [], None, 0
while time.monotonic() < deadline and after < 20:
    started = time.monotonic()
    try:
        if conn is None:
            conn = psycopg2.connect(dsn)
            conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("INSERT INTO failover_probe DEFAULT VALUES RETURNING id")
            committed.append([started, cur.fetchone()[0]])
        after += 1 if failures else 0
        time.sleep(0.05)
    except psycopg2.Error as exc:
        failures.append([started, (str(exc).strip().splitlines() or [type(exc).__name__])[0]])
        if conn is not None:
            conn.close()
        conn = None
        time.sleep(0.2)
print(json.dumps({"committed": committed, "failures": failures}))
