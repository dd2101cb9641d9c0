"""bench/zero_downtime's load client: a GET that a reused keep-alive connection lost before any answer is
sent again once (RFC 9112 9.3.1, what browsers do when Caddy closes idle connections at a reload); a
fresh connection that is closed, or a retry that fails, is still an error. Against a real socket server
on loopback that closes connections the way a reloading server does."""

from __future__ import annotations

import http.client
import importlib.machinery
import importlib.util
import socket
import socketserver
import threading
import time

from conftest import ROOT

LOADER = importlib.machinery.SourceFileLoader("zero_downtime", str(ROOT / "bench" / "zero_downtime"))
SPEC = importlib.util.spec_from_loader("zero_downtime", LOADER)
zd = importlib.util.module_from_spec(SPEC)
LOADER.exec_module(zd)

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def serve(drop):
    """A keep-alive HTTP server; drop(connection number, request number on it) -> close instead of answering."""
    counter = {"connections": 0}

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            counter["connections"] += 1
            number, buffer, served = counter["connections"], b"", 0
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    buffer += chunk
                buffer = buffer.split(b"\r\n\r\n", 1)[1]
                served += 1
                if drop(number, served):
                    self.request.shutdown(socket.SHUT_RDWR)
                    return
                self.request.sendall(ANSWER)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class PlainLoad(zd.Load):
    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)


def run(drop, requests=20) -> "PlainLoad":
    server = serve(drop)
    try:
        with PlainLoad(server.server_address[1], clients=1) as load:
            deadline = time.monotonic() + 10
            while load.sent < requests and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        server.shutdown()
        server.server_close()
    return load


def test_a_reused_connection_closed_before_answering_is_retried_once_on_a_new_one():
    # The first connection answers three requests, then closes on the fourth (a reload).
    load = run(lambda conn, req: conn == 1 and req == 4)
    assert load.sent >= 20 and (load.errors, load.non_2xx, load.retried) == (0, 0, 1), vars(load)


def test_a_fresh_connection_closed_before_answering_is_an_error():
    # Every connection after the first closes on its first request: nothing to retry on a new connection.
    load = run(lambda conn, req: conn == 1 and req == 2 or conn > 1 and req == 1, requests=5)
    assert load.errors >= 1 and load.retried == 1, vars(load)
    assert load.ok == 1, vars(load)
