#!/usr/bin/env python3
"""The test bed's alert receiver: an SMTP server and an HTTPS webhook sink in one process.

Alertmanager on a simulated server sends its notifications here, so the tests can
prove that an alert reaches a person's mailbox or a chat webhook over real TLS with
real credentials.  Each delivery becomes one JSON line, written and flushed at once
(the tests poll the files):

  SMTP  :8025  STARTTLS offered and required before AUTH and MAIL; AUTH PLAIN or
               LOGIN required before MAIL; any username and password are accepted,
               the username and the sha256 of the password are recorded.
               -> /data/mail.jsonl
                  {"time", "auth_user", "auth_password_sha256", "mail_from",
                   "rcpt_tos", "subject", "body", "raw_headers"}
  HTTPS :8443  every POST (any path) -> /data/webhook.jsonl
                  {"time", "path", "headers", "body"}  (Authorization: sha256 of its value)
               answers 200 {"ok":true}; GET /healthz answers 200.

Certificate and key: /certs/sink.pem and /certs/sink.key (mounted; testbed.py sink
makes them).  Started as root, it reads the key and then runs as nobody.

    sink.py            run both listeners
    sink.py --check    health check: both listeners answer on 127.0.0.1
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import json
import logging
import os
import pwd
import re
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(os.environ.get("SINK_DATA", "/data"))
CERT = Path(os.environ.get("SINK_CERT", "/certs/sink.pem"))
KEY = Path(os.environ.get("SINK_KEY", "/certs/sink.key"))
SMTP_PORT = 8025
HTTPS_PORT = 8443
HOSTNAME = "alert-sink.test"
RUN_AS = "nobody"

_locks: dict[str, threading.Lock] = {"mail": threading.Lock(), "webhook": threading.Lock()}


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def short_path(path: str) -> str:
    """For the log: the first segment only, as webhook URLs tend to carry a token."""
    segments = path.split("?")[0].strip("/").split("/")
    return f"/{segments[0]}/..." if len(segments) > 1 else f"/{segments[0]}"


def append(kind: str, record: dict, summary: str) -> None:
    """One JSON line to /data/KIND.jsonl, on disk before the sender gets its answer."""
    line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
    with _locks[kind], open(DATA / f"{kind}.jsonl", "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
    print(f"{kind}: {summary}", flush=True)


# ------------------------------------------------------------------------ mail
def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def mail_record(content: bytes, *, auth_user: str, auth_password_sha256: str,
                mail_from: str, rcpt_tos: list[str]) -> dict:
    """The JSON line of one received message (pure: the tests of the sink itself use it)."""
    # compat32: header values exactly as sent (RFC 2047 words left encoded), only unfolded.
    raw = email.message_from_bytes(content, policy=email.policy.compat32)
    raw_headers: dict[str, str] = {}
    for name, value in raw.items():
        value = _unfold(str(value))
        raw_headers[name] = f"{raw_headers[name]}\n{value}" if name in raw_headers else value
    msg = email.message_from_bytes(content, policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain", "html"))
    body = ""
    if part is not None:
        try:
            body = part.get_content()
        except (LookupError, ValueError):  # unknown charset, broken encoding: keep what there is
            body = (part.get_payload(decode=True) or b"").decode("utf-8", errors="replace")
    # Alertmanager's quoted-printable parts decode to CRLF line ends; tests read "\n".
    body = body.replace("\r\n", "\n")
    return {
        "time": time.time(),
        "auth_user": auth_user,
        "auth_password_sha256": auth_password_sha256,
        "mail_from": mail_from,
        "rcpt_tos": list(rcpt_tos),
        "subject": str(msg.get("subject", "")),
        "body": body,
        "raw_headers": raw_headers,
    }


class MailHandler:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        login = getattr(session.auth_data, "login", b"") or b""
        password = getattr(session.auth_data, "password", b"") or b""
        record = mail_record(
            envelope.original_content or envelope.content,
            auth_user=login.decode("utf-8", errors="replace"),
            auth_password_sha256=sha256_hex(password),
            mail_from=envelope.mail_from,
            rcpt_tos=envelope.rcpt_tos,
        )
        append("mail", record, f"{record['mail_from']} -> {', '.join(record['rcpt_tos'])} "
                               f"(AUTH {record['auth_user']}): {record['subject']}")
        return "250 Message accepted for delivery"


def accept_any_login(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult  # imported here: --check and the unit tests need no aiosmtpd

    # auth_data is LoginPassword(login, password) for PLAIN and LOGIN; handed back so that
    # aiosmtpd stores it as session.auth_data for handle_DATA.
    return AuthResult(success=True, auth_data=auth_data)


async def serve_smtp(tls: ssl.SSLContext) -> asyncio.AbstractServer:
    from aiosmtpd.smtp import SMTP

    class SinkSMTP(SMTP):
        # aiosmtpd's AUTH LOGIN prompts are "User Name\0" and "Password\0"; Alertmanager's
        # LOGIN client (as Go's usual ones) accepts only "Username:" and "Password:", which
        # real servers send, and fails with "unexpected server challenge" otherwise.
        AuthLoginUsernameChallenge = "Username:"
        AuthLoginPasswordChallenge = "Password:"  # secret-scan: allow (a prompt, not a secret)

    loop = asyncio.get_running_loop()

    def factory():
        return SinkSMTP(MailHandler(), hostname=HOSTNAME, ident="rpa-testbed alert-sink",
                    tls_context=tls, require_starttls=True,
                    auth_required=True, auth_require_tls=True,
                    authenticator=accept_any_login, enable_SMTPUTF8=True, loop=loop)

    return await loop.create_server(factory, host="0.0.0.0", port=SMTP_PORT, reuse_address=True)


# --------------------------------------------------------------------- webhook
def webhook_headers(headers) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        out[name] = sha256_hex(value) if name.lower() == "authorization" else value
    return out


def webhook_body(raw: bytes):
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class WebhookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rpa-testbed-alert-sink"
    timeout = 30

    def _answer(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self):  # noqa: N802 - http.server's name
        raw = self._read_body()
        append("webhook", {"time": time.time(), "path": self.path,
                           "headers": webhook_headers(self.headers), "body": webhook_body(raw)},
               f"POST {short_path(self.path)} {len(raw)} bytes from {self.headers.get('User-Agent', '?')}")
        self._answer(200, b'{"ok":true}')

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.split("?")[0] == "/healthz":
            self._answer(200, b'{"ok":true}')
        else:
            self._answer(404, b'{"ok":false}')

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        if self.path.startswith("/healthz") or self.command == "POST":
            return  # the health check every 10 s; a POST has its own line (append)
        status = args[1] if len(args) > 1 else ""
        print(f"https: {self.client_address[0]} {self.command} {short_path(self.path)} {status}", flush=True)


class TLSHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, tls: ssl.SSLContext):
        self.tls = tls
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the connection's own thread, so a slow client
        # cannot hold up the accept loop.
        request.settimeout(30)
        tls_request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(tls_request, client_address)

    def handle_error(self, request, client_address):
        print(f"https: {client_address[0]}: {sys.exc_info()[1]!r}", flush=True)


# ------------------------------------------------------------------------ main
def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(CERT, KEY)
    return ctx


def drop_privileges() -> None:
    if os.getuid() != 0:
        return
    user = pwd.getpwnam(RUN_AS)
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


async def main() -> None:
    logging.basicConfig(format="%(name)s %(levelname)s: %(message)s", level=logging.WARNING)
    # aiosmtpd itself sets its deprecated session.login_data on every AUTH, and logs that.
    logging.getLogger("mail.log").addFilter(lambda record: "login_data is deprecated" not in record.getMessage())
    tls = tls_context()  # reads the key: before dropping root
    DATA.mkdir(parents=True, exist_ok=True)
    drop_privileges()
    for kind in ("mail", "webhook"):
        (DATA / f"{kind}.jsonl").touch()
    httpd = TLSHTTPServer(("0.0.0.0", HTTPS_PORT), WebhookHandler, tls)
    threading.Thread(target=httpd.serve_forever, name="https", daemon=True).start()
    smtp = await serve_smtp(tls)
    print(f"alert-sink: SMTP on :{SMTP_PORT} (STARTTLS, AUTH required), HTTPS on :{HTTPS_PORT}, "
          f"as uid {os.getuid()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # PID 1 ignores them unless handled
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    smtp.close()
    httpd.shutdown()


def check() -> int:
    """Health check: the SMTP greeting and GET /healthz, both on 127.0.0.1."""
    try:
        with socket.create_connection(("127.0.0.1", SMTP_PORT), timeout=5) as sock:
            if not sock.recv(512).startswith(b"220"):
                return 1
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the listener is local; its identity is tested elsewhere
        with socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=5) as raw, \
                ctx.wrap_socket(raw) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            if not sock.recv(512).startswith(b"HTTP/1.1 200"):
                return 1
    except OSError as exc:
        print(f"alert-sink: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check())
    asyncio.run(main())
