"""The application services, exercised through the reference app (molecule/default/refapp).

The reference app honours the environment contract for real: a variable the
app role failed to give it stops the service, and every endpoint answers with
the service that served it.
"""

from __future__ import annotations

import base64
import json
import random
import shlex
import subprocess
import time
from urllib.parse import urlsplit

import pytest

from conftest import (COMPOSE, ROOT, kill_and_time_recovery, PROJECT, PROJECT_DIR, app_login, cname, container, executed_tasks, put_file, published, redis_cmd, run_playbook, run_site,
                      secret, ssh_argv, ssh_run, wait_healthy)

# Shell words: where backend and frontend are published now (start-first alternates between two ports).
BACKEND, FRONTEND = published("backend"), published("frontend")
APP = ["backend", "celery-worker", "celery-beat", "flower", "frontend", "deployer"]
PYTHON_SERVICES = ["backend", "celery-worker", "celery-beat"]
HEADERS = "/root/.rpa-test/headers"
REFAPP = "rpa-testbed/refapp:latest"

# A WebSocket client from the standard library, run inside the server: the
# handshake, one masked text frame, and the echoed frame back.
WS_CLIENT = r'''
import base64, os, socket, sys
host, port, path, text = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, host, port, key)).encode())
data = b""
while b"\r\n\r\n" not in data:
    data += s.recv(4096)
head, data = data.split(b"\r\n\r\n", 1)
print(head.split(b"\r\n")[0].decode())
payload, mask = text.encode(), os.urandom(4)
s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
    data += s.recv(4096)
print(data[2:2 + (data[1] & 0x7F)].decode())
'''


def http(host, method: str, url: str, headers_file: str | None = None,
         seconds: int = 15) -> tuple[int, dict | str]:
    """(status, parsed JSON or text) of a request made inside the server; secrets only via a header file."""
    cmd = f"curl -s -m {seconds} -X {method} -o /tmp/rpa-test-body -w '%{{http_code}}' "
    if headers_file:
        cmd += f"-H @{headers_file} "
    # Double quotes: the URL may hold a $(docker port ...) of BACKEND or FRONTEND.
    status = int(host.check_output(cmd + '"' + url + '"'))
    body = host.check_output("cat /tmp/rpa-test-body && rm -f /tmp/rpa-test-body")
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def env_of(host, service: str) -> dict:
    """The container's environment (asserted on, never printed: it holds secrets)."""
    pairs = container(host, service)["Config"]["Env"]
    return dict(p.split("=", 1) for p in pairs)


@pytest.fixture(scope="module")
def headers(server):
    """Header files (0600, in the server) with the demo's deploy token and Flower login."""
    flower = base64.b64encode(f"admin:{secret('app_flower_password')}".encode()).decode()
    files = {
        "deploy": f"Authorization: Bearer {secret('app_deploy_token')}\n",
        "wrong": "Authorization: Bearer not-the-deploy-token-at-all\n",
        "flower": f"Authorization: Basic {flower}\n",
    }
    for name, content in files.items():
        put_file(server, f"{HEADERS}/{name}", content)
    yield {name: f"{HEADERS}/{name}" for name in files}
    ssh_run(server, f"rm -rf {HEADERS}")


# ------------------------------------------------------------------ wiring


def test_every_app_service_is_running_healthy(host):
    for service in APP:
        state = container(host, service)["State"]
        assert state["Status"] == "running" and state["Health"]["Status"] == "healthy", (service, state)


def test_backend_reaches_postgres_through_pgbouncer_and_redis(host):
    status, body = http(host, "GET", f"http://{BACKEND}/api/health")
    assert status == 200, body
    assert (body["service"], body["database"], body["redis"]) == ("backend", "ok", "ok"), body
    assert body["database_user"] == "rpa_engine"
    for service in PYTHON_SERVICES:
        env = env_of(host, service)
        db = urlsplit(env["DATABASE_URL"])
        assert (db.scheme, db.hostname, db.port, db.path) == ("postgresql", "pgbouncer", 6432, "/rpa_engine"), service
        assert db.password == secret("postgres_app_password"), f"{service}: DATABASE_URL is not the vault's password"
        assert db.username == app_login(), f"{service}: DATABASE_URL is not the vault's login"
        redis = urlsplit(env["REDIS_URL"])
        assert (redis.hostname, redis.port) == ("redis", 6379) and redis.password == secret("redis_password"), service


def test_the_contract_is_in_each_container_and_secrets_only_where_needed(host):
    for service in PYTHON_SERVICES:
        env = env_of(host, service)
        assert env["PYTHONPATH"] == "/app", service
        assert env["TZ"] == "UTC" and env["CELERY_TIMEZONE"] == "UTC", service
    assert env_of(host, "backend")["JWT_EXPIRE_MINUTES"] == "30"
    assert "JWT_SECRET" not in env_of(host, "celery-worker")
    for service in ("frontend", "flower", "deployer"):
        env = env_of(host, service)
        assert not {"DATABASE_URL", "JWT_SECRET"} & env.keys(), service
    assert "DEPLOY_TOKEN" in env_of(host, "deployer") and "DEPLOY_TOKEN" not in env_of(host, "backend")


def test_issued_tokens_live_30_minutes(host):
    status, body = http(host, "POST", f"http://{BACKEND}/api/token")
    assert status == 200, body
    claims = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
    assert claims["exp"] - claims["iat"] == 30 * 60


def test_a_celery_task_submitted_through_the_backend_completes(host):
    x, y = random.randint(1000, 9999), random.randint(1000, 9999)
    status, body = http(host, "POST", f"http://{BACKEND}/api/tasks?x={x}&y={y}")
    assert status == 200, body
    deadline = time.monotonic() + 30
    while True:
        _, state = http(host, "GET", f"http://{BACKEND}/api/tasks/{body['task_id']}")
        if state["state"] == "SUCCESS" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (state["state"], state["result"]) == ("SUCCESS", x + y), state
    # The worker wrote its row through PgBouncer.
    worker_host = container(host, "celery-worker")["Config"]["Hostname"]
    rows = host.check_output(
        f"docker exec {cname('postgres')} psql -X -At -U postgres -d rpa_engine -c "
        + shlex.quote(f"select hostname from refapp_task_runs where result = '{x + y}'"))
    assert worker_host in rows.split(), rows


def test_a_redeployed_worker_finishes_its_running_task_exactly_once(host):
    """Warm shutdown: SIGTERM and a grace period of at least the task time limit. A 20-s task is running
    when celery-worker is recreated at once; the old worker finishes it (its row, its host name), the
    stop waits for it, and it ran once."""
    tag = f"drain-{random.randint(0, 10**9)}"
    old = container(host, "celery-worker")
    assert old["Config"]["StopSignal"] == "SIGTERM"
    assert old["Config"]["StopTimeout"] >= 300, old["Config"]["StopTimeout"]
    host.check_output(f"docker exec {cname('backend')} python3 -c "
                      + shlex.quote(f"from refapp.worker import slow; slow.delay({tag!r}, 20)"))
    starts = f"refapp:slow:{tag}:starts"
    deadline = time.monotonic() + 20
    while host.check_output(redis_cmd("get", starts)).strip() != "1":
        assert time.monotonic() < deadline, "the slow task never started"
        time.sleep(0.5)
    began = time.monotonic()
    res = host.run(f"{COMPOSE} up -d --force-recreate --no-deps celery-worker")
    took = time.monotonic() - began
    assert res.rc == 0, res.stderr
    rows = host.check_output(
        f"docker exec {cname('postgres')} psql -X -At -U postgres -d rpa_engine -c "
        + shlex.quote(f"select hostname from refapp_task_runs where task = 'slow' and result = '{tag}'")).split()
    # The recreate returned only after the old worker had finished the task and written its row.
    assert rows == [old["Config"]["Hostname"]], rows
    assert took >= 10, f"the old worker stopped after {took:.1f}s, before its task could finish"
    assert host.check_output(redis_cmd("get", starts)).strip() == "1"
    wait_healthy(host, "celery-worker", 90)


def test_beat_schedules_its_periodic_task_with_an_aware_timestamp(host):
    _, first = http(host, "GET", f"http://{BACKEND}/api/beat")
    deadline = time.monotonic() + 35
    while True:
        time.sleep(3)
        _, now = http(host, "GET", f"http://{BACKEND}/api/beat")
        if now["count"] > first["count"] or time.monotonic() > deadline:
            break
    assert now["count"] > first["count"], (first, now)
    assert now["last"].endswith("+00:00"), now  # aware, in the configured zone (UTC)


def test_the_rate_limiter_counts_in_redis_with_a_ttl(host):
    client = f"rpa-test-{random.randint(0, 10**9)}"
    # A fixed one-minute window: start well inside one, or the count resets midway.
    second = int(host.check_output("date +%s")) % 60
    if second > 45:
        time.sleep(62 - second)
    codes = [int(host.check_output(
        f"curl -s -o /dev/null -w '%{{http_code}}' -H 'X-Client-Id: {client}' http://{BACKEND}/api/limited"))
        for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2, codes
    _, body = http(host, "GET", f"http://{BACKEND}/api/limited")
    ttl = int(host.check_output(
        redis_cmd("ttl", body["key"])))
    assert 0 < ttl <= 120, ttl


def test_the_websocket_echoes(host):
    out = host.check_output(
        f"python3 -c {shlex.quote(WS_CLIENT)} 127.0.0.1 \"$(echo {BACKEND} | cut -d: -f2)\" /ws hello-from-the-test"
    ).splitlines()
    assert out[0].startswith("HTTP/1.1 101"), out
    assert out[1] == "backend echo: hello-from-the-test", out


def test_the_backend_exports_metrics(host):
    status, body = http(host, "GET", f"http://{BACKEND}/metrics")
    assert status == 200 and "refapp_requests_total" in body


def test_flower_demands_its_password_and_sees_the_worker(host, headers):
    status, _ = http(host, "GET", "http://127.0.0.1:5555/api/workers")
    assert status == 401
    status, body = http(host, "GET", "http://127.0.0.1:5555/api/workers", headers["wrong"])
    assert status == 401
    status, body = http(host, "GET", "http://127.0.0.1:5555/api/workers", headers["flower"])
    worker = container(host, "celery-worker")["Config"]["Hostname"]
    assert status == 200 and f"celery@{worker}" in body["workers"], body
    # Backend and frontend hold one port of their pair (start-first), whichever the last replacement took.
    for ports in ((5555,), (8000, 8001), (2999, 3000), (9000,)):
        listeners = "\n".join(host.check_output(f"ss -Htln 'sport = :{port}'") for port in ports).strip()
        assert listeners and all("127.0.0.1:" in line for line in listeners.splitlines()), (ports, listeners)


def test_the_frontend_serves_the_spa(host):
    status, body = http(host, "GET", f"http://{FRONTEND}/")
    assert status == 200 and "served-by: frontend" in body


# ------------------------------------------------------------------ deployer


def test_the_deployer_redeploys_a_service_with_the_right_token(host, headers):
    """A new image under the service's reference, then the deployer: the container is recreated.

    A redeploy answers when `docker compose up` has stopped, recreated and started the container (the
    deployer allows it 600 s): on a loaded machine that took more than 15 s once, so the client waits 120."""
    original = host.check_output(f"docker image inspect --format '{{{{.Id}}}}' {REFAPP}")
    before = container(host, "frontend")["Id"]
    host.check_output(f"printf 'FROM {REFAPP}\\nLABEL org.rpa-engine.test=redeploy\\n' "
                      f"| DOCKER_BUILDKIT=0 docker build -q -t {REFAPP} -")
    try:
        status, body = http(host, "POST", "http://127.0.0.1:9000/deploy/frontend", headers["deploy"], seconds=120)
        assert status == 200 and body["rc"] == 0, body
        after = container(host, "frontend")
        assert after["Id"] != before and after["Image"] != original
        wait_healthy(host, "frontend", 60)
    finally:
        new = host.check_output(f"docker image inspect --format '{{{{.Id}}}}' {REFAPP}")
        host.check_output(f"docker tag {original} {REFAPP}")
        status, body = http(host, "POST", "http://127.0.0.1:9000/deploy/frontend", headers["deploy"], seconds=120)
        host.run(f"docker image rm {new}")
    assert status == 200 and container(host, "frontend")["Image"] == original, body
    wait_healthy(host, "frontend", 60)


def test_the_deployer_runs_without_capabilities_on_a_read_only_root(host):
    """It holds the Docker socket: what else it can do is as little as possible (README)."""
    config = container(host, "deployer")["HostConfig"]
    assert (config["CapDrop"], config["CapAdd"], config["ReadonlyRootfs"]) == (["ALL"], None, True), config
    assert "no-new-privileges:true" in config["SecurityOpt"]
    # What the kernel sees in the running process, and a write that the root file system refuses.
    assert host.check_output(f"docker exec {cname('deployer')} grep CapEff /proc/1/status").split() ==\
        ["CapEff:", "0000000000000000"]
    res = host.run(f"docker exec {cname('deployer')} touch /rpa-test-write")
    assert res.rc != 0 and "Read-only file system" in res.stderr, res.stderr


def test_the_deployer_refuses_a_wrong_token_and_itself(host, headers):
    before = container(host, "backend")["Id"]
    status, body = http(host, "POST", "http://127.0.0.1:9000/deploy/backend", headers["wrong"])
    assert status == 401, body
    status, body = http(host, "POST", "http://127.0.0.1:9000/deploy/backend")
    assert status == 401, body
    status, body = http(host, "POST", "http://127.0.0.1:9000/deploy/deployer", headers["deploy"])
    assert status == 403, body
    assert container(host, "backend")["Id"] == before


# ------------------------------------------------------------------ self-healing


@pytest.fixture(scope="module")
def killed(host):
    """Every app service killed at once (one wait instead of six)."""
    return kill_and_time_recovery(host, APP, 60)


@pytest.mark.parametrize("service", APP)
def test_docker_kill_heals_within_60_seconds(killed, service):
    assert isinstance(killed[service], float) and killed[service] < 60, killed[service]


def deployer_answers(host, headers) -> None:
    status, body = http(host, "GET", "http://127.0.0.1:9000/health")
    assert status == 200 and body["service"] == "deployer", body
    # 403: the token was accepted, the probe "service" refused.
    status, body = http(host, "POST", "http://127.0.0.1:9000/deploy/no-such-service", headers["deploy"])
    assert status == 403, body


def recover(server) -> list[dict]:
    proc, data = run_site("--tags", "deployer")
    assert proc.returncode == 0, proc.stdout[-3000:]
    return executed_tasks(data, server["name"])


def test_recovery_brings_a_deleted_deployer_back(host, server, headers):
    host.check_output(f"docker rm -f {cname('deployer')}")
    recover(server)
    deployer_answers(host, headers)


def test_recovery_replaces_a_crash_looping_container_of_the_wrong_image(host, server, headers):
    host.check_output(f"docker rm -f {cname('deployer')}")
    host.check_output(f"docker run -d --name {cname('deployer')} --restart always "
                      "--entrypoint false rpa-testbed/refapp:latest")
    time.sleep(3)
    assert container(host, "deployer")["RestartCount"] >= 1
    recover(server)
    live = container(host, "deployer")
    assert live["Config"]["Labels"].get("com.docker.compose.project") == PROJECT
    deployer_answers(host, headers)


def test_recovery_follows_a_token_changed_in_the_vault(host, server, headers):
    new_token = "rotated-deploy-token-" + "".join(random.choices("abcdefghijklmnop", k=24))  # secret-scan: allow (made up per run)
    put_file(server, f"{HEADERS}/new", f"Authorization: Bearer {new_token}\n")
    proc, _ = run_site("--tags", "deployer", "-e", json.dumps({"app_deploy_token": new_token}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert http(host, "POST", "http://127.0.0.1:9000/deploy/no-such-service", f"{HEADERS}/new")[0] == 403
    assert http(host, "POST", "http://127.0.0.1:9000/deploy/no-such-service", headers["deploy"])[0] == 401
    # Back to the vault's token.
    recover(server)
    deployer_answers(host, headers)


def test_a_nothing_to_recover_run_changes_nothing(server):
    tasks = recover(server)
    assert not [t for t in tasks if t["changed"]]


# ------------------------------------------------------------------ gate


def test_a_bad_backend_image_fails_the_gate_naming_it_and_rolls_back(host, server):
    host.check_output(f"printf 'FROM {REFAPP}\\nCMD [\"false\"]\\n' "
                      "| DOCKER_BUILDKIT=0 docker build -q -t rpa-testbed/broken-backend:latest -")
    before = container(host, "backend")
    # What runs now (pulled services by digest), but the broken backend - all from the host ("archive").
    images = {service: container(host, service)["Config"]["Image"] for service in APP}
    images["backend"] = "rpa-testbed/broken-backend:latest"
    try:
        proc, data = run_site("--tags", "app", "-e", json.dumps({"app_images": images, "app_image_source": "archive",
                                                                 "app_image_sources": {}}))
        assert proc.returncode != 0
        failed = [t for t in executed_tasks(data, server["name"]) if t["failed"]]
        msg = failed[0]["msg"]
        assert "fragment app failed its health gate" in msg and "backend" in msg, msg
        assert "Rolled back to the previous definition; it is healthy again." in msg, msg
        live = container(host, "backend")
        assert live["Image"] == before["Image"] and live["State"]["Health"]["Status"] == "healthy"
        status, body = http(host, "GET", f"http://{BACKEND}/api/health")
        assert status == 200, body
    finally:
        host.run("docker image rm rpa-testbed/broken-backend:latest")


# ------------------------------------------------------------------ build source


def test_a_service_built_from_the_app_repository(host, server, tmp_path):
    """`build`: a git repository (here a bare one on the server) is checked out and built per commit."""
    work = tmp_path / "refapp-src"
    (work / "frontend").mkdir(parents=True)
    (work / "frontend" / "Dockerfile").write_text(f"FROM {REFAPP}\nCOPY index.html /srv/frontend/index.html\n")
    (work / "frontend" / "index.html").write_text("<p>served-by: frontend, built from git</p>\n")
    git = ["git", "-C", str(work), "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for argv in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "frontend"]):
        subprocess.run(git + argv, check=True, capture_output=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(tmp_path / "refapp.git")], check=True)
    tar = subprocess.run(["tar", "-C", str(tmp_path), "-c", "refapp.git"], check=True, capture_output=True).stdout
    subprocess.run(ssh_argv(server, "rm -rf /srv/refapp.git && tar -C /srv -x"), input=tar, check=True, timeout=60)

    build = json.dumps({"app_image_sources": {"frontend": "build", "deployer": "archive"},
                        "app_build_repo_url": "/srv/refapp.git",
                        "app_build_repo_ref": "main"})
    try:
        proc, data = run_site("--tags", "app", "-e", build)
        assert proc.returncode == 0, proc.stdout[-3000:]
        live = container(host, "frontend")
        assert live["Config"]["Image"] == f"{PROJECT}-local/frontend:{commit[:12]}"
        status, body = http(host, "GET", f"http://{FRONTEND}/")
        assert status == 200 and "built from git" in body, body
        assert host.file(f"{PROJECT_DIR}/src/frontend/Dockerfile").exists
        # The same commit again: nothing rebuilt, nothing recreated.
        proc, data = run_site("--tags", "app", "-e", build)
        assert proc.returncode == 0 and data["stats"][server["name"]]["changed"] == 0,\
            [t["task"] for t in executed_tasks(data, server["name"]) if t["changed"]]
    finally:
        proc, _ = run_site("--tags", "app")
        host.run("rm -rf /srv/refapp.git")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert container(host, "frontend")["Config"]["Image"] == REFAPP


# ------------------------------------------------------------------ pull source: by digest, rollback

PULLED = ["backend", "celery-worker", "celery-beat", "flower"]


def recorded(host) -> dict:
    return json.loads(host.file(f"{PROJECT_DIR}/app-images.json").content_string)


def test_pulled_services_run_by_digest_roll_back_and_keep_three(host, server):
    """The test bed's registry (TLS from its own CA, a login): a new tag deploys by digest; app_rollback brings
    back the digest that ran before, whatever the tags say now; each service keeps three digests and the
    image that falls out leaves the disk, with the tag it was pulled by."""
    tag_ref = (ROOT / ".testbed" / "registry" / "refapp").read_text().strip()
    repo = tag_ref.rsplit(":", 1)[0]
    first = container(host, "backend")["Config"]["Image"]
    assert first.startswith(f"{repo}@sha256:") and len(first.rsplit(":", 1)[1]) == 64, first
    assert recorded(host)["backend"][0] == first
    # Three releases under new tags, built and pushed from the server (its engine trusts the CA, its root is
    # logged in). The first two stand for earlier deploys: the recorded history says the backend ran
    # release 1, release 2, then the first image again - three deploys, so the next two make five.
    stamp = int(time.time())
    tags = [f"{repo}:test-{stamp}-{n}" for n in (1, 2, 3)]
    host.check_output(" && ".join(
        f"printf 'FROM {tag_ref}\\nLABEL org.rpa-engine.test=release-{stamp}-{n}\\n' "
        f"| DOCKER_BUILDKIT=0 docker build -q -t {tag} - >/dev/null && docker push -q {tag} >/dev/null"
        for n, tag in enumerate(tags, 1)))
    d1, d2, d3 = (next(ref for ref in json.loads(host.check_output(
        f"docker image inspect --format '{{{{json .RepoDigests}}}}' {tag}")) if ref.startswith(f"{repo}@"))
        for tag in tags)
    history = recorded(host) | {"backend": [first, d2, d1]}
    host.check_output(f"printf '%s' '{json.dumps(history)}' > {PROJECT_DIR}/app-images.json")
    # Release 3 for the backend only: one start-first replacement per run, the others stay.
    images = {service: container(host, service)["Config"]["Image"] for service in APP} | {"backend": tags[2]}
    try:
        proc, _ = run_playbook("playbooks/app.yml", "--tags", "app", "-e", json.dumps({"app_images": images}))
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert container(host, "backend")["Config"]["Image"] == d3
        assert recorded(host)["backend"] == [d3, first, d2]
        # Back to what ran before, although the tags still name release 3.
        proc, _ = run_playbook("playbooks/app.yml", "--tags", "app",
                               "-e", json.dumps({"app_images": images, "app_rollback": True}))
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert {container(host, s)["Config"]["Image"] for s in PULLED} == {first}
        assert recorded(host)["backend"] == [first, d3, d2]
        assert container(host, "backend")["State"]["Health"]["Status"] == "healthy"
        # Five deploys, three kept: release 1 fell out and is gone, tag and all; 2 and 3 stay for a rollback.
        for ref in (d1, tags[0]):
            assert host.run(f"docker image inspect {ref}").rc != 0, ref
        for ref in (d2, d3, first):
            assert host.run(f"docker image inspect {ref}").rc == 0, ref
    finally:
        host.run(f"docker image rm {' '.join(tags)}")
