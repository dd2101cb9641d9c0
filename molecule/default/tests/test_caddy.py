"""Caddy, the front door: from the controller through the server's published HTTPS/HTTP ports.

The certificate comes from Caddy's local CA (tls internal) for "localhost":
the clients here connect to 127.0.0.1 with SNI and Host "localhost".
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import warnings

import pytest

from conftest import (COMPOSE, PROJECT, ROOT, container, executed_tasks, inventory_path, run_playbook, run_site, secret,
                      vault_identity, zero_downtime)

NAME = "localhost"


def published(server: dict, port: int) -> int:
    out = subprocess.run(["docker", "port", server["name"], f"{port}/tcp"], check=True,
                         capture_output=True, text=True).stdout
    return int(out.splitlines()[0].rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def ports(server) -> dict:
    return {"https": published(server, 443), "http": published(server, 80)}


def tls_context(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # Caddy's local CA is not trusted here
    if version is not None:
        warnings.filterwarnings("ignore", "ssl.TLSVersion.TLSv1_1 is deprecated", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions at all
    return ctx


def request(port: int, path: str, tls: bool = True, method: str = "GET",
            auth: tuple[str, str] | None = None, name: str = NAME) -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) of one HTTP/1.1 request to 127.0.0.1:port for site `name`."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock = tls_context().wrap_socket(raw, server_hostname=name) if tls else raw
    extra = ""
    if auth:
        extra = "Authorization: Basic " + base64.b64encode(":".join(auth).encode()).decode() + "\r\n"
    with sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n"
                     f"Accept-Encoding: identity\r\n{extra}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:]))
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return int(lines[0].split()[1]), headers, body


def answered_by(status: int, headers: dict, body: bytes) -> str:
    """Which service gave this answer: the backend and deployer name themselves in JSON, the
    frontend in a header and in every body, 404s included (molecule/default/refapp)."""
    if headers.get("x-served-by") == "frontend" and b"served-by: frontend" in body:
        return "frontend"
    try:
        return json.loads(body)["service"]
    except (ValueError, KeyError, TypeError):
        return f"nobody known ({status}: {body[:80]!r})"


@pytest.mark.parametrize(("path", "service", "status"), [
    ("/api/health", "backend", 200), ("/api/items", "backend", 200), ("/deploy/nothing-here", "deployer", 404),
    ("/", "frontend", 200), ("/some/spa/route", "frontend", 200), ("/missing-asset.js", "frontend", 404),
])
def test_each_route_reaches_its_service(ports, path, service, status):
    answer = request(ports["https"], path)
    assert (answer[0], answered_by(*answer)) == (status, service), answer[2][:300]


@pytest.mark.parametrize(("path", "service"), [
    ("/api/health", "backend"), ("/deploy/nothing-here", "deployer"), ("/", "frontend")])
def test_each_route_reaches_its_service_from_inside_the_server(host, path, service):
    body = host.check_output(
        f"curl -sk -m 10 --resolve {NAME}:443:127.0.0.1 -w '\\n%{{http_code}}' https://{NAME}{path}")
    content, _, status = body.rpartition("\n")
    assert status == ("404" if path.startswith("/deploy/") else "200"), body[-300:]
    if service == "frontend":
        assert "served-by: frontend" in content
    else:
        assert json.loads(content)["service"] == service


def test_the_deployer_health_says_up_and_nothing_more(host, ports):
    status, _, body = request(ports["https"], "/deploy/health")
    assert (status, json.loads(body)) == (200, {"status": "ok"}), body[:200]
    # The deployer's own answer names the Docker engine's version; the one outside must not.
    own = json.loads(host.check_output("curl -s -m 10 http://127.0.0.1:9000/health"))
    assert own["docker"] and own["docker"].encode() not in body


def test_the_websocket_upgrades_and_echoes_through_caddy(ports):
    raw = socket.create_connection(("127.0.0.1", ports["https"]), timeout=15)
    # HTTP/1.1 only: a WebSocket upgrade over TLS is negotiated with ALPN http/1.1.
    ctx = tls_context()
    ctx.set_alpn_protocols(["http/1.1"])
    with ctx.wrap_socket(raw, server_hostname=NAME) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(f"GET /ws HTTP/1.1\r\nHost: {NAME}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, data = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        assert b"sec-websocket-accept: " + accept in head.lower().replace(accept.lower(), accept)
        payload, mask = b"through-caddy", os.urandom(4)
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask
                     + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
            data += sock.recv(4096)
        assert data[2:2 + (data[1] & 0x7F)] == b"backend echo: through-caddy"


def test_http_redirects_to_https(ports):
    status, headers, _ = request(ports["http"], "/api/health", tls=False)
    # 308: the method and body are kept (a POST stays a POST), as the README says.
    assert status == 308, status
    assert headers["location"] == f"https://{NAME}/api/health"


def compressed_with(port: int, accept: str) -> bytes:
    """The Content-Encoding Caddy picks for a large response when the client accepts `accept`."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    with tls_context().wrap_socket(raw, server_hostname=NAME) as sock:
        # Large enough for Caddy to compress (its minimum is 512 bytes).
        sock.sendall(f"GET /api/openapi.json HTTP/1.1\r\nHost: {NAME}\r\nAccept-Encoding: {accept}\r\n"
                     "Connection: close\r\n\r\n".encode())
        head = sock.recv(65536).split(b"\r\n\r\n")[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-encoding:"):
            return line.split(b":", 1)[1].strip()
    return b"identity"


def test_security_headers_and_compression(ports):
    status, headers, _ = request(ports["https"], "/")
    assert status == 200
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "server" not in headers
    # zstd first when the client takes both, gzip for the others, nothing for identity.
    assert compressed_with(ports["https"], "zstd, gzip") == b"zstd"
    assert compressed_with(ports["https"], "gzip") == b"gzip"
    assert compressed_with(ports["https"], "identity") == b"identity"


def handshake(port: int, version: ssl.TLSVersion) -> str:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        with tls_context(version).wrap_socket(raw, server_hostname=NAME) as sock:
            return sock.version()
    except ssl.SSLError as exc:
        return f"refused: {exc.reason}"


def test_tls_1_1_is_refused_and_1_2_accepted(ports):
    assert handshake(ports["https"], ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    # The server's alert, not a client that could not offer TLS 1.1.
    assert handshake(ports["https"], ssl.TLSVersion.TLSv1_1) == "refused: TLSV1_ALERT_PROTOCOL_VERSION"


def test_caddy_runs_validated_config_and_writes_json_access_logs(host, ports):
    assert host.service("caddy").is_running and host.service("caddy").is_enabled
    f = host.file("/etc/caddy/Caddyfile")
    assert (f.user, f.group, f.mode) == ("root", "caddy", 0o640)
    assert host.run("caddy validate --adapter caddyfile --config /etc/caddy/Caddyfile").rc == 0
    request(ports["https"], "/api/health?access-log-probe")
    line = host.check_output("grep -h access-log-probe /var/log/caddy/access.log | tail -1")
    assert json.loads(line)["request"]["uri"] == "/api/health?access-log-probe"


def test_a_broken_caddyfile_never_reaches_the_running_caddy(host, server, ports):
    before = host.file("/etc/caddy/Caddyfile").sha256sum
    proc, data = run_site("--tags", "caddy", "-e", json.dumps({"caddy_extra_site_config": "no_such_directive on"}))
    assert proc.returncode != 0
    failed = [t for t in executed_tasks(data, server["name"]) if t["failed"]]
    assert failed and failed[0]["task"].startswith("caddy : Ensure the Caddyfile"), failed
    assert "no_such_directive" in failed[0]["msg"] or "unrecognized directive" in proc.stdout, failed[0]["msg"]
    assert host.file("/etc/caddy/Caddyfile").sha256sum == before
    assert request(ports["https"], "/api/health")[0] == 200


SNIPPET = "handle /rpa-test-snippet {\n\trespond \"from the inventory\" 200\n}"
EXTRA_SITE = "http://extra.localhost {\n\trespond \"from an extra site\" 200\n}"


@pytest.fixture(scope="module")
def inventory_additions(host, server, ports, tmp_path_factory):
    """One caddy run with everything the inventory can add or change at once: a snippet in the main
    site, a whole extra site, the Grafana route's login set to Grafana's own admin login (so that a
    leaked Authorization header would get in), a 1 MiB access log that rotates, and /deploy/* for
    the server's own addresses only."""
    extra = tmp_path_factory.mktemp("caddy") / "extra.json"
    extra.write_text(json.dumps({
        "caddy_extra_site_config": SNIPPET, "caddy_extra_sites": [EXTRA_SITE],
        "caddy_grafana_user": "admin", "caddy_grafana_password": secret("grafana_admin_password"),
        "caddy_access_log_roll_size": "1MiB", "caddy_access_log_roll_keep": 2,
        # Only the server itself may deploy: the controller, through the published port, may not.
        "caddy_deploy_allowed_cidrs": ["127.0.0.1/32", "::1"]}))
    extra.chmod(0o600)
    state = {"restored": False}
    proc, _ = run_site("--tags", "caddy", "-e", f"@{extra}")
    assert proc.returncode == 0, proc.stdout[-2000:]
    yield state
    if not state["restored"]:
        run_site("--tags", "caddy")


def test_an_inventory_snippet_adds_a_route(inventory_additions, ports):
    assert request(ports["https"], "/rpa-test-snippet")[::2] == (200, b"from the inventory")


def test_an_inventory_site_block_is_served(inventory_additions, ports):
    assert request(ports["http"], "/", tls=False, name="extra.localhost")[::2] == (200, b"from an extra site")


def test_deploy_is_refused_outside_the_allowed_networks(host, inventory_additions, ports):
    status, _, body = request(ports["https"], "/deploy/health")  # one refusal: fail2ban bans at five
    assert (status, json.loads(body)) == (403, {"error": "forbidden"}), (status, body[:200])
    inside = host.check_output(
        f"curl -sk -m 10 --resolve {NAME}:443:127.0.0.1 -w '\\n%{{http_code}}' https://{NAME}/deploy/health")
    assert inside.rpartition("\n")[2] == "200", inside[-200:]


def test_grafana_route_does_not_pass_its_login_on_to_grafana(host, inventory_additions, ports):
    """Even when Caddy's login IS a Grafana login, Grafana never sees it: its API still says 401."""
    admin = ("admin", secret("grafana_admin_password"))
    # The same login, straight to Grafana inside the server, is accepted: it is a real Grafana login.
    assert basic_auth_status(host, "http://127.0.0.1:3001/api/user", *admin) == 200
    status, _, body = request(ports["https"], "/grafana/api/health", auth=admin)
    assert status == 200 and json.loads(body)["database"] == "ok", (status, body)  # Caddy let us in
    status, _, body = request(ports["https"], "/grafana/api/user", auth=admin)
    assert status == 401, (status, body)


def test_the_access_log_rotates_at_its_size(host, inventory_additions, ports):
    """1 MiB of JSON access log (about 350 requests with a 3 KB query string) rolls over, keeping 2."""
    padding = "x" * 3000
    # curl's [1-800] makes 800 requests over one kept-alive connection: about 2.4 MB of log lines.
    host.check_output(f"curl -sk -o /dev/null --resolve {NAME}:443:127.0.0.1 "
                      f"'https://{NAME}/api/health?pad={padding}&n=[1-800]'")
    # Caddy gzips what it rolls over: access-<time>.log.gz.
    rotated = host.check_output("ls /var/log/caddy/ | grep -E '^access-.*\\.log\\.gz$' || true").split()
    assert 1 <= len(rotated) <= 2, rotated
    assert host.file("/var/log/caddy/access.log").size <= 1024 * 1024 + 8192
    # Client addresses and URLs: readable by Caddy's group, not by every local user - rolled files too.
    for name in ["access.log"] + rotated:
        log = host.file(f"/var/log/caddy/{name}")
        assert (log.user, log.group, log.mode) == ("caddy", "caddy", 0o640), (name, log.user, log.group, oct(log.mode))


def test_inventory_additions_go_with_the_inventory(inventory_additions, ports):
    proc, _ = run_site("--tags", "caddy")
    inventory_additions["restored"] = True
    assert proc.returncode == 0, proc.stdout[-2000:]
    # The snippet's path is a client-side route of the frontend again; the extra site is gone.
    answer = request(ports["https"], "/rpa-test-snippet")
    assert (answer[0], answered_by(*answer)) == (200, "frontend"), answer[2][:200]
    assert request(ports["http"], "/", tls=False, name="extra.localhost")[2] != b"from an extra site"
    assert request(ports["https"], "/deploy/health")[0] == 200  # open to all networks again


REFAPP = "rpa-testbed/refapp:latest"


def containers_per_service(host) -> dict[str, int]:
    ps = host.check_output(f"{COMPOSE} ps -a --format '{{{{.Service}}}}'").split()
    return {service: ps.count(service) for service in set(ps)}


def test_a_backend_replaced_start_first_fails_no_request_and_leaves_one_container(host, server, ports):
    """playbooks/restart.yml under load: the path of site.yml, rotations and --tags app for backend and frontend."""
    before = container(host, "backend")["Id"]
    vault_id, pass_file = vault_identity()
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "zero_downtime"), "--only", "ours", "--requests", "1000",
                           "--max-latency", "2", "--inventory", str(inventory_path()),
                           "--https-port", str(ports["https"]), "--ssh-port", str(server["ssh_port"]),
                           "--key", server["key"]], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, ANSIBLE_VAULT_IDENTITY_LIST=f"{vault_id}@{pass_file}"))
    print(proc.stdout, proc.stderr[-2000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])[0]
    assert result["sent"] >= 1000, result
    assert (result["non_2xx"], result["connection_errors"]) == (0, 0), result
    # Docker's events: the new backend was healthy before the old one got its stop signal.
    assert result["new_healthy_before_old_stopped"] is True, result
    # The bench's target is 1 s; a timed test on a shared machine gets slack.
    assert result["max_ms"] <= 2000, result
    assert proc.returncode == 0
    after = json.loads(host.check_output(f"docker inspect {PROJECT}-backend-1"))[0]
    assert after["Id"] != before and after["State"]["Health"]["Status"] == "healthy"
    assert set(containers_per_service(host).values()) == {1}, containers_per_service(host)


def test_a_replacement_that_fails_its_gate_is_removed_and_the_old_one_keeps_serving(host, ports):
    """The new frontend crash-loops (its image re-pointed at one that exits): Caddy never notices."""
    before = container(host, "frontend")
    original = host.check_output(f"docker image inspect --format '{{{{.Id}}}}' {REFAPP}")
    host.check_output(f"printf 'FROM {REFAPP}\\nENTRYPOINT [\"false\"]\\n' | DOCKER_BUILDKIT=0 docker build -q -t {REFAPP} -")
    try:
        with zero_downtime().Load(ports["https"], clients=2, paths=("/",)) as load:
            zero_downtime().wait_sent(load, 20)
            proc, _ = run_playbook("playbooks/restart.yml", "-e", json.dumps({"app_restart_services": ["frontend"]}))
            zero_downtime().wait_sent(load, load.sent + 20)
    finally:
        broken = host.check_output(f"docker image inspect --format '{{{{.Id}}}}' {REFAPP}")
        host.check_output(f"docker tag {original} {REFAPP}")
        if broken != original:
            host.run(f"docker image rm {broken}")
    assert proc.returncode != 0
    assert "the new container failed its gate and was removed; the old one kept serving, untouched" in proc.stdout
    assert "crash-looping" in proc.stdout or "exited" in proc.stdout, proc.stdout[-3000:]
    after = container(host, "frontend")
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])
    assert containers_per_service(host)["frontend"] == 1
    assert (load.sent, load.non_2xx, load.errors) >= (40, 0, 0) and (load.non_2xx, load.errors) == (0, 0), load.codes


def test_grafana_route_needs_the_basic_auth_password(ports):
    password = secret("caddy_grafana_password")
    status, headers, _ = request(ports["https"], "/grafana/api/health")
    assert status == 401 and headers.get("www-authenticate", "").startswith("Basic"), (status, headers)
    assert request(ports["https"], "/grafana/api/health", auth=("ops", password + "x"))[0] == 401
    assert request(ports["https"], "/grafana/api/health", auth=("admin", password))[0] == 401
    status, _, body = request(ports["https"], "/grafana/api/health", auth=("ops", password))
    assert status == 200 and json.loads(body)["database"] == "ok", (status, body)
    # The prefix is stripped before Grafana, and /grafana itself leads there.
    status, headers, _ = request(ports["https"], "/grafana", auth=("ops", password))
    assert (status, headers.get("location")) == (308, "/grafana/"), (status, headers)


def basic_auth_status(host, url: str, user: str, password: str) -> int:
    """An HTTP status from inside the server; the login in a 0600 curl config, not on a command line."""
    host.run("install -d -m 0700 /root/.rpa-test")
    host.run(f"umask 077; printf 'user = \"{user}:%s\"\\n' '{password}' > /root/.rpa-test/basic.curl")
    code = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' -K /root/.rpa-test/basic.curl {url}")
    host.run("rm -f /root/.rpa-test/basic.curl")
    return int(code)


def test_caddyfile_holds_a_bcrypt_hash_not_the_password(host):
    caddyfile = host.file("/etc/caddy/Caddyfile")
    assert (caddyfile.user, caddyfile.group, caddyfile.mode) == ("root", "caddy", 0o640)
    content = caddyfile.content_string
    assert secret("caddy_grafana_password") not in content
    hashes = [line.split()[1] for line in content.splitlines() if line.strip().startswith("ops $2b$12$")]
    assert len(hashes) == 1, "no bcrypt hash for the Grafana route's user"
    from passlib.hash import bcrypt
    assert bcrypt.verify(secret("caddy_grafana_password"), hashes[0])


DEPLOY_GUESSER = r"""
import json, socket, ssl, sys, time
address, name, tries, bantime = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE

def post():
    with ctx.wrap_socket(socket.create_connection((address, 443), timeout=3), server_hostname=name) as s:
        s.sendall(f"POST /deploy/backend HTTP/1.1\r\nHost: {name}\r\nAuthorization: Bearer wrong-{time.time()}\r\n"
                  f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        return int(s.recv(64).split()[1])

def reachable():
    try:
        socket.create_connection((address, 443), timeout=1).close()
        return True
    except OSError:
        return False

statuses = [post() for _ in range(tries)]
start = time.monotonic()
while reachable() and time.monotonic() - start < 15:
    time.sleep(0.5)
banned = time.monotonic() - start
while not reachable() and time.monotonic() - start < bantime + 30:
    time.sleep(1)
print(json.dumps({"statuses": statuses, "banned_after": banned, "let_in_after": time.monotonic() - start}))
"""


def test_fail2ban_bans_a_client_that_keeps_guessing_deploy_tokens_then_lets_it_in(host, server):
    """A client of its own (a container the test starts beside the server) sends wrong deploy tokens
    through Caddy: after caddy_deploy_ban_maxretry refusals it is banned, and let in after the ban time."""
    jail = host.check_output("cat /etc/fail2ban/jail.d/rpa-deploy.local")
    tries = int(jail.split("maxretry = ")[1].split()[0])
    bantime = int(jail.split("bantime = ")[1].split()[0])
    assert host.check_output("fail2ban-client status rpa-deploy").count("Currently banned:\t0") == 1
    proc = subprocess.run(["docker", "run", "--rm", "rpa-testbed/http-probe:latest", "python3", "-c",
                           DEPLOY_GUESSER, server["address"], NAME, str(tries), str(bantime)],
                          capture_output=True, text=True, timeout=bantime + 90, check=True)
    result = json.loads(proc.stdout)
    print(f"fail2ban: {tries} wrong tokens, banned after {result['banned_after']:.1f} s, "
          f"let in again after {result['let_in_after']:.1f} s (bantime {bantime} s)")
    assert result["statuses"] == [401] * tries, result
    assert result["banned_after"] < 10, result
    assert bantime - 2 <= result["let_in_after"] <= bantime + 20, result
    status = host.check_output("fail2ban-client status rpa-deploy")
    assert int(status.split("Total banned:")[1].split()[0]) >= 1 and "Currently banned:\t0" in status, status
