"""testbed/images/alert-sink/sink.py: what one received mail or webhook call becomes in its JSON lines."""

from __future__ import annotations

import hashlib
import importlib.util
from email.message import EmailMessage

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("alert_sink", ROOT / "testbed" / "images" / "alert-sink" / "sink.py")
sink = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sink)

# The shape of Alertmanager 0.28's default mail (html only, quoted-printable, CRLF), trimmed.
ALERTMANAGER_MAIL = (
    b"Date: Mon, 30 Nov 2026 19:50:04 +0000\r\n"
    b"From: alertmanager@rpa.test\r\n"
    b"Message-Id: <1796068204125535137.16374103554529518996@247848c39717>\r\n"
    b"Subject: [FIRING:1]  (E2ETest x critical)\r\n"
    b"To: oncall@rpa.test\r\n"
    b"Content-Type: multipart/alternative;  boundary=2f58d8\r\n"
    b"MIME-Version: 1.0\r\n"
    b"\r\n"
    b"--2f58d8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"Content-Type: text/html; charset=UTF-8\r\n"
    b"\r\n"
    b"<html>\r\n<body>E2ETest =E2=80=93 firing</body>\r\n</html>\r\n"
    b"--2f58d8--\r\n"
)


def record(content: bytes) -> dict:
    return sink.mail_record(content, auth_user="am-user", auth_password_sha256=sink.sha256_hex("pw"),
                            mail_from="alertmanager@rpa.test", rcpt_tos=["oncall@rpa.test"])


def test_alertmanager_mail_html_only():
    line = record(ALERTMANAGER_MAIL)
    assert line["subject"] == "[FIRING:1]  (E2ETest x critical)"
    assert line["body"] == "<html>\n<body>E2ETest \u2013 firing</body>\n</html>"  # the last CRLF is the boundary's
    assert line["raw_headers"]["To"] == "oncall@rpa.test"
    assert line["raw_headers"]["Content-Type"] == "multipart/alternative;  boundary=2f58d8"
    assert line["auth_password_sha256"] == hashlib.sha256(b"pw").hexdigest()
    assert line["rcpt_tos"] == ["oncall@rpa.test"] and isinstance(line["time"], float)


def test_plain_part_preferred_and_encoded_subject_decoded():
    msg = EmailMessage()
    msg["Subject"] = "[FIRING:2] Disk voll \u2013 \u00fcberall"
    msg["To"] = "a@rpa.test"
    msg["Received"] = "from one"
    msg["Received"] = "from two"
    msg.set_content("plain \u00fc\n")
    msg.add_alternative("<p>html</p>", subtype="html")
    line = record(msg.as_bytes())
    assert line["body"] == "plain \u00fc\n"
    assert line["subject"] == "[FIRING:2] Disk voll \u2013 \u00fcberall"
    assert line["raw_headers"]["Subject"].startswith("[FIRING:2] Disk voll =?utf-8?")  # as sent
    assert line["raw_headers"]["Received"] == "from one\nfrom two"


def test_webhook_headers_and_body():
    headers = sink.webhook_headers({"authorization": "Bearer t0k", "Content-Type": "application/json"})
    assert headers == {"authorization": hashlib.sha256(b"Bearer t0k").hexdigest(),
                       "Content-Type": "application/json"}
    assert sink.webhook_body(b'{"status": "firing"}') == {"status": "firing"}
    assert sink.webhook_body(b"not json") == "not json"


def test_the_log_leaves_tokens_in_paths_out():
    assert sink.short_path("/hook/s3cr3t-token") == "/hook/..."
    assert sink.short_path("/heartbeat/s3cr3t-token?x=1") == "/heartbeat/..."
    assert sink.short_path("/healthz") == "/healthz"
    assert sink.short_path("/") == "/"
