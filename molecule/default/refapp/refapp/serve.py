"""Serve until SIGTERM, then finish the requests in flight and exit.

The reference app's small HTTP services run as PID 1 of their container, and PID 1 ignores SIGTERM
unless it handles it: `docker stop` would wait out the grace period and SIGKILL them mid-request.
Handled, a stop is what a start-first rollout's drain needs: no new connections, the open ones answered.
"""

import signal
import threading
from http.server import ThreadingHTTPServer


def serve(address: tuple[str, int], handler) -> None:
    server = ThreadingHTTPServer(address, handler)
    server.daemon_threads = False  # server_close() joins the handler threads: requests in flight finish
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    server.serve_forever()
    server.server_close()
