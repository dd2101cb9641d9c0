#!/usr/bin/env python3
"""Local test bed: a Docker engine, registry-free images, and simulated servers.

The simulated server is a Debian 13 container with systemd as PID 1, sshd and
room for its own (nested) Docker engine.  Ansible reaches it over SSH exactly
as it would reach a cloud VM, so the roles under test never know the
difference.  No registry is reachable on our CI machines, so every image is
built here: the base from debootstrap, the rest from Dockerfiles under
testbed/images/ that start FROM that base and install Debian packages.

Only the standard library is used: this runs before the project's venv exists.

    testbed.py prereqs            install docker.io, debootstrap, ssh client when missing
    testbed.py engine             make sure a Docker engine answers (starts dockerd if needed)
    testbed.py images             build (or reuse from cache) every test image
    testbed.py up NAME --ssh-port P --https-port P --http-port P
    testbed.py down NAME          remove the server and its nested Docker data
    testbed.py load-images NAME [IMAGE ...]   copy test images into NAME's nested engine
    testbed.py save-images        image archives: .testbed/images/services.tar.zst, app.tar.zst, redis.tar.zst
    testbed.py sink               the alert receiver (SMTP + HTTPS webhook) the servers' Alertmanager reaches
    testbed.py registry           the image registry (TLS, login) the servers pull the app's images from
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = ROOT / "testbed" / "images"
# The reference application (a test fixture for the app role) is built like the
# service images but shipped in its own archive, as an app's images would be.
REFAPP_DIR = ROOT / "molecule" / "default" / "refapp"
STATE_DIR = ROOT / ".testbed"
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
CACHE_DIR = Path(os.environ.get("RPA_TESTBED_CACHE", "/var/cache/rpa-testbed"))
LOG_DIR = Path(os.environ.get("RPA_TESTBED_LOGS", "/var/log/rpa-testbed"))

SUITE = "trixie"
BASE_IMAGE = f"rpa-testbed/debian:{SUITE}"
BASE_PACKAGES = ["python3", "ca-certificates"]
# Bump when the debootstrap recipe changes in a way the inputs above do not show.
BASE_RECIPE_VERSION = "1"
LABEL = "org.rpa-engine.testbed.hash"
SERVER_IMAGE = "rpa-testbed/server:latest"

# CAP_SYS_RESOURCE is refused by the CI kernel, so --privileged and a bare
# --cap-add=ALL both fail; systempaths=unconfined lets the nested engine
# configure IPv6 sysctls of its containers (see shared/TESTBED.md).
SERVER_RUN_OPTS = [
    "--cap-add=ALL", "--cap-drop=SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/tmp",
]


class TestbedError(RuntimeError):
    """A step of the test bed failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, check: bool = True, capture: bool = False,
        input_bytes: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, check=False, input=input_bytes, env=env,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.PIPE if capture else None)
    if check and proc.returncode != 0:
        detail = ""
        if capture:
            detail = (proc.stderr or b"").decode(errors="replace")[-2000:]
        raise TestbedError(f"command failed (rc={proc.returncode}): {' '.join(cmd)}\n{detail}")
    return proc


def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    # The legacy builder needs no buildx plugin, which the engine from
    # Debian's docker.io may not have next to a newer client.
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    return run(["docker", *args], check=check, capture=capture, env=env)


def docker_out(*args: str) -> str:
    return docker(*args).stdout.decode().strip()


# --------------------------------------------------------------------- prereqs
def cmd_prereqs(_args: argparse.Namespace) -> None:
    wanted = {"dockerd": "docker.io", "debootstrap": "debootstrap",
              "ssh": "openssh-client", "ssh-keygen": "openssh-client", "zstd": "zstd",
              # verify's host audit copies the controller's Lynis into the server.
              "lynis": "lynis",
              # the alert sink's throwaway CA and certificate.
              "openssl": "openssl"}
    missing = sorted({pkg for binary, pkg in wanted.items() if shutil.which(binary) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise TestbedError(f"missing {', '.join(missing)}; run as root or install them first")
    log(f"installing {' '.join(missing)} from Debian's packages")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


# ---------------------------------------------------------------------- engine
def engine_answers() -> bool:
    return shutil.which("docker") is not None and docker("info", check=False).returncode == 0


def cmd_engine(_args: argparse.Namespace) -> None:
    if engine_answers():
        return
    if Path("/run/systemd/system").is_dir():
        run(["systemctl", "start", "docker"])
    else:
        # No systemd as PID 1 on the CI machines: run dockerd ourselves.
        pidfile = Path("/var/run/docker.pid")
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), 0)
            except (ValueError, ProcessLookupError):
                pidfile.unlink()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        logf = open(LOG_DIR / "dockerd.log", "ab")  # noqa: SIM115 - handed to the daemon
        log(f"starting dockerd (log: {LOG_DIR / 'dockerd.log'})")
        subprocess.Popen(["dockerd"], stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    for _ in range(90):
        if engine_answers():
            return
        time.sleep(1)
    raise TestbedError(f"the Docker engine did not answer within 90 s; see {LOG_DIR / 'dockerd.log'}")


# ---------------------------------------------------------------------- images
def image_label(image: str) -> str | None:
    proc = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}',
                  image, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip()


def base_hash() -> str:
    recipe = json.dumps([SUITE, sorted(BASE_PACKAGES), BASE_RECIPE_VERSION])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def build_base() -> None:
    wanted = base_hash()
    if image_label(BASE_IMAGE) == wanted:
        log(f"{BASE_IMAGE} is cached")
        return
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {SUITE} into {rootfs} (about a minute)")
        run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             SUITE, str(rootfs)], capture=True)
        # Keep the image small and apt quiet inside builds.
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(["docker", "import", "-c", "CMD [\"/bin/bash\"]",
                              "-c", f"LABEL {LABEL}={wanted}", "-", BASE_IMAGE],
                             stdin=tar.stdout, capture_output=True, check=False)
        tar.wait()
        if tar.returncode != 0 or imp.returncode != 0:
            raise TestbedError(f"docker import failed: {imp.stderr.decode(errors='replace')}")
    log(f"built {BASE_IMAGE}")


def context_hash(context: Path, parent_id: str) -> str:
    digest = hashlib.sha256(parent_id.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def image_name(context: Path) -> str:
    return f"rpa-testbed/{context.name}:latest"


def build_context(context: Path) -> None:
    name = image_name(context)
    wanted = context_hash(context, docker_out("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE))
    if image_label(name) == wanted:
        log(f"{name} is cached")
        return
    log(f"building {name}")
    docker("build", "--label", f"{LABEL}={wanted}", "-t", name, str(context), capture=False)


def contexts() -> list[Path]:
    return [*sorted(p for p in IMAGES_DIR.iterdir() if (p / "Dockerfile").is_file()), REFAPP_DIR]


def cmd_images(_args: argparse.Namespace) -> None:
    build_base()
    for context in contexts():
        build_context(context)


# --------------------------------------------------------------------- servers
def ensure_key() -> Path:
    SSH_KEY.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(SSH_KEY.parent, 0o700)
    # Under a lock: the scale-out scenario starts its three servers at once, and in a fresh clone each one's
    # `up` found no key and ran ssh-keygen on the same file (the second one failed: it would not overwrite).
    with open(SSH_KEY.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not SSH_KEY.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rpa-testbed",
                 "-f", str(SSH_KEY)])
        write_ssh_config()
    return SSH_KEY


def write_ssh_config() -> None:
    # For testinfra's ssh backend against a test server (make verify-demo).
    config = SSH_KEY.parent / "config"
    config.write_text("Host 127.0.0.1 localhost\n"
                      f"  IdentityFile {SSH_KEY}\n"
                      "  User root\n"
                      "  StrictHostKeyChecking no\n"
                      "  UserKnownHostsFile /dev/null\n"
                      "  LogLevel ERROR\n"
                      # One SSH connection per server for the whole run, not one per command.
                      "  ControlMaster auto\n"
                      f"  ControlPath {SSH_KEY.parent}/cp-%C\n"
                      "  ControlPersist 60s\n")


def container_state(name: str) -> str | None:
    proc = docker("container", "inspect", "--format", "{{.State.Status}}", name, check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def ssh_args(port: int) -> list[str]:
    return ["ssh", "-i", str(SSH_KEY), "-p", str(port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR", "root@127.0.0.1"]


def wait_for_ssh(name: str, port: int, timeout: int = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run([*ssh_args(port), "true"], check=False, capture=True).returncode == 0:
            return
        time.sleep(1)
    logs = docker("logs", "--tail", "40", name, check=False).stdout.decode(errors="replace")
    raise TestbedError(f"{name}: no SSH answer on 127.0.0.1:{port} within {timeout} s\n{logs}")


def cmd_up(args: argparse.Namespace) -> None:
    key = ensure_key()
    state = container_state(args.name)
    if state is None:
        forget_offsite_repo(args.name)
        # A new server starts bare: an engine volume left by a server removed without -v is not reused.
        docker("volume", "rm", "-f", f"{args.name}-docker", check=False)
        docker("volume", "create", f"{args.name}-docker")
        docker("run", "-d", "--name", args.name, "--hostname", args.name,
               "--label", "org.rpa-engine.testbed=server", *SERVER_RUN_OPTS,
               "-v", f"{args.name}-docker:/var/lib/docker",
               "-p", f"127.0.0.1:{args.ssh_port}:22",
               "-p", f"127.0.0.1:{args.http_port}:80",
               "-p", f"127.0.0.1:{args.https_port}:443",
               SERVER_IMAGE)
        log(f"started {args.name}")
    elif state != "running":
        docker("start", args.name)
        log(f"restarted {args.name}")
    pub = key.with_suffix(".pub").read_bytes()
    # The key is made on this controller at run time and never baked into an image.
    run(["docker", "exec", "-i", args.name, "sh", "-c",
         "install -d -m 700 /root/.ssh && umask 077 && cat > /root/.ssh/authorized_keys"],
        input_bytes=pub, capture=True)
    wait_for_ssh(args.name, args.ssh_port)
    log(f"{args.name} answers on ssh://root@127.0.0.1:{args.ssh_port}")


def cmd_down(args: argparse.Namespace) -> None:
    if container_state(args.name) is not None:
        docker("rm", "-f", "-v", args.name)
    docker("volume", "rm", "-f", f"{args.name}-docker", check=False)
    forget_offsite_repo(args.name)
    log(f"removed {args.name}")


def forget_offsite_repo(name: str) -> None:
    """A new server is a new cluster: the inventories' repository path of a server of that name
    (/repo/NAME) would hold another cluster's archive, which the postgres role refuses to write into."""
    if container_state(OFFSITE_NAME) == "running":
        docker("exec", OFFSITE_NAME, "rm", "-rf", f"/repo/{name}", check=False)


def cmd_load_images(args: argparse.Namespace) -> None:
    images = args.images or [image_name(p) for p in contexts() if p.name not in ("server", "alert-sink", "registry")]
    for image in images:
        outer_id = docker_out("image", "inspect", "--format", "{{.Id}}", image)
        inner = docker("exec", args.name, "docker", "image", "inspect", "--format", "{{.Id}}",
                       image, check=False)
        if inner.returncode == 0 and inner.stdout.decode().strip() == outer_id:
            continue
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "exec", "-i", args.name, "docker", "load", "-q"],
                              stdin=save.stdout, capture_output=True, check=False)
        save.wait()
        if save.returncode != 0 or load.returncode != 0:
            raise TestbedError(f"loading {image} into {args.name} failed: "
                               f"{load.stderr.decode(errors='replace')}")
        log(f"loaded {image} into {args.name}")


def save_archive(images: list[str], out: Path) -> None:
    """One `docker save` of images (shared base layers stored once), zstd-compressed, rewritten only on change.

    Compressed because it travels to the server on every fresh converge: a
    third of the bytes, and `docker load` reads zstd as it is.
    """
    ids = [docker_out("image", "inspect", "--format", "{{.Id}}", image) for image in images]
    stamp = out.with_name(out.name.split(".")[0] + ".ids")
    wanted = "\n".join(f"{i} {n}" for i, n in zip(ids, images)) + "\n"
    if out.exists() and stamp.exists() and stamp.read_text() == wanted:
        log(f"{out} is up to date")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as handle:
        save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
        zstd = subprocess.run(["zstd", "-q", "-T0", "-3", "-c"], stdin=save.stdout, stdout=handle, check=False)
        save.stdout.close()
        save.wait()
    if save.returncode != 0 or zstd.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise TestbedError(f"docker save | zstd of {', '.join(images)} failed")
    tmp.replace(out)
    stamp.write_text(wanted)
    log(f"saved {len(images)} images to {out}")


def cmd_save_images(args: argparse.Namespace) -> None:
    """Archives for hosts without a registry: the service images (docker role's
    docker_image_archives) and the reference app (app role's app_image_archives)."""
    out = Path(args.output)
    services = [image_name(p) for p in sorted(IMAGES_DIR.iterdir())
                if (p / "Dockerfile").is_file() and p.name not in ("server", "http-probe", "alert-sink", "registry", "offsite")]
    save_archive(services, out / "services.tar.zst")
    save_archive([image_name(REFAPP_DIR)], out / "app.tar.zst")
    # The scale-out scenario's redis_host runs Redis alone: its image without every other service's.
    save_archive([image_name(IMAGES_DIR / "redis")], out / "redis.tar.zst")


# ------------------------------------------------------------------ alert sink
# Where the servers' Alertmanager delivers: an SMTP server (STARTTLS and AUTH
# required) and an HTTPS webhook sink, in one container on the controller's
# engine (testbed/images/alert-sink).  Its ports are published on the default
# bridge's gateway address, which a server container reaches directly and its
# nested containers through the server's NAT.
SINK_NAME = "rpa-alert-sink"
SINK_CONTEXT = IMAGES_DIR / "alert-sink"
SINK_DIR = STATE_DIR / "alert-sink"
SINK_DNS = "alert-sink.test"
SINK_PORTS = (8025, 8443)
SINK_LABEL = "org.rpa-engine.testbed.alert-sink"
# Bump when the `docker run` options below change.
SINK_RUN_VERSION = "1"
CA_DAYS = 3650
CERT_DAYS = 825
RENEW_DAYS = 30


def bridge_gateway(inspect_output: str) -> str:
    """The IPv4 gateway of `docker network inspect bridge` (JSON); the subnet's first
    address when the engine leaves Gateway out, as Docker then uses that one."""
    networks = json.loads(inspect_output)
    for config in (networks[0].get("IPAM") or {}).get("Config") or []:
        subnet = ipaddress.ip_network(config["Subnet"]) if config.get("Subnet") else None
        if subnet is not None and subnet.version != 4:
            continue
        if config.get("Gateway"):
            gateway = ipaddress.ip_address(config["Gateway"].split("/")[0])
            if gateway.version == 4:
                return str(gateway)
        elif subnet is not None:
            return str(next(subnet.hosts()))
    raise TestbedError("the default bridge network has no IPv4 gateway")


def cert_facts(x509_text: str) -> tuple[set[str], float | None]:
    """SANs ("IP:a.b.c.d", "DNS:name") and notAfter (epoch) from
    `openssl x509 -noout -enddate -ext subjectAltName`."""
    sans = set()
    for kind, value in re.findall(r"\b(IP Address|DNS):([^,\s]+)", x509_text):
        if kind == "DNS":
            sans.add(f"DNS:{value.lower()}")
        else:
            sans.add(f"IP:{ipaddress.ip_address(value)}")
    end = re.search(r"^notAfter=(.+)$", x509_text, re.M)
    return sans, (ssl.cert_time_to_seconds(end.group(1).strip()) if end else None)


def cert_renewal_reason(sans: set[str], not_after: float | None, address: str, now: float,
                        *, verified: bool, key_matches: bool) -> str | None:
    """Why the sink's certificate must be made again, or None while it still serves."""
    if not verified:
        return "not signed by the current CA"
    if not key_matches:
        return "key and certificate do not match"
    if f"IP:{ipaddress.ip_address(address)}" not in sans:
        return f"{address} is not among its names"
    if f"DNS:{SINK_DNS}" not in sans:
        return f"{SINK_DNS} is not among its names"
    if not_after is None or not_after - now < RENEW_DAYS * 86400:
        return "it expires soon"
    return None


def openssl(*args: str) -> str:
    return run(["openssl", *args], capture=True).stdout.decode()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def make_ca(directory: Path) -> None:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        cnf = Path(tmp) / "ca.cnf"
        _write_private(cnf, "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = v3\n"
                            "[dn]\nCN = rpa-testbed alert-sink CA\n"
                            "[v3]\nbasicConstraints = critical,CA:TRUE,pathlen:0\n"
                            "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n")
        openssl("req", "-x509", "-new", "-config", str(cnf), "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", str(CA_DAYS),
                "-keyout", f"{tmp}/ca.key", "-out", f"{tmp}/ca.pem")
        os.chmod(f"{tmp}/ca.key", 0o600)
        os.replace(f"{tmp}/ca.key", directory / "ca.key")
        os.replace(f"{tmp}/ca.pem", directory / "ca.pem")


def make_sink_cert(directory: Path, address: str, *, stem: str = "sink", dns: str = SINK_DNS,
                   ca_dir: Path | None = None, extra_ips: tuple[str, ...] = ()) -> None:
    """STEM.pem and STEM.key in directory, for address (and extra_ips) and dns, signed by ca_dir's CA."""
    # Python 3.13's default client context verifies strictly (VERIFY_X509_STRICT):
    # the leaf needs an authorityKeyIdentifier, the CA critical basicConstraints.
    ca_dir = ca_dir or directory
    names = ",".join([f"IP:{ip}" for ip in (address, *extra_ips)] + [f"DNS:{dns}"])
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        ext = Path(tmp) / f"{stem}.ext"
        ext.write_text("[v3]\nbasicConstraints = critical,CA:FALSE\n"
                       "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
                       f"subjectAltName = {names}\n"
                       "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", f"/CN={dns}", "-keyout", f"{tmp}/{stem}.key", "-out", f"{tmp}/{stem}.csr")
        openssl("x509", "-req", "-in", f"{tmp}/{stem}.csr", "-CA", str(ca_dir / "ca.pem"),
                "-CAkey", str(ca_dir / "ca.key"), "-set_serial", str(secrets.randbits(120)),
                "-days", str(CERT_DAYS), "-extfile", str(ext), "-extensions", "v3", "-out", f"{tmp}/{stem}.pem")
        os.chmod(f"{tmp}/{stem}.key", 0o600)
        os.replace(f"{tmp}/{stem}.key", directory / f"{stem}.key")
        os.replace(f"{tmp}/{stem}.pem", directory / f"{stem}.pem")


def ensure_sink_certs(directory: Path, address: str) -> None:
    """A throwaway CA (made once) and the sink's certificate for address and SINK_DNS."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_pem, ca_key = directory / "ca.pem", directory / "ca.key"
    ca_end = None
    if ca_pem.exists() and ca_key.exists():
        ca_end = cert_facts(openssl("x509", "-in", str(ca_pem), "-noout", "-enddate"))[1]
    if ca_end is None or ca_end - time.time() < (CERT_DAYS + RENEW_DAYS) * 86400:
        make_ca(directory)
        log(f"made the alert sink's CA {ca_pem}")
    pem, key = directory / "sink.pem", directory / "sink.key"
    reason = "there is none"
    if pem.exists() and key.exists():
        verified = run(["openssl", "verify", "-CAfile", str(ca_pem), str(pem)],
                       check=False, capture=True).returncode == 0
        key_matches = (openssl("x509", "-in", str(pem), "-noout", "-pubkey")
                       == openssl("pkey", "-in", str(key), "-pubout"))
        sans, not_after = cert_facts(openssl("x509", "-in", str(pem), "-noout", "-enddate",
                                             "-ext", "subjectAltName"))
        reason = cert_renewal_reason(sans, not_after, address, time.time(),
                                     verified=verified, key_matches=key_matches)
    if reason:
        make_sink_cert(directory, address)
        log(f"made the alert sink's certificate for {address} and {SINK_DNS} ({reason})")


def sink_answers() -> bool:
    return docker("exec", SINK_NAME, "python3", "/usr/local/lib/alert-sink/sink.py", "--check",
                  check=False).returncode == 0


def sink_ready(timeout: int = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sink_answers():
            return
        time.sleep(0.5)
    logs = docker("logs", "--tail", "40", SINK_NAME, check=False)
    raise TestbedError(f"{SINK_NAME} did not answer within {timeout} s\n"
                       f"{(logs.stdout + logs.stderr).decode(errors='replace')}")


def cmd_sink(_args: argparse.Namespace) -> None:
    build_context(SINK_CONTEXT)
    image = image_name(SINK_CONTEXT)
    address = bridge_gateway(docker_out("network", "inspect", "bridge"))
    ensure_sink_certs(SINK_DIR, address)
    address_file = SINK_DIR / "address"
    if not address_file.exists() or address_file.read_text() != address:
        address_file.write_text(address)
    image_id = docker_out("image", "inspect", "--format", "{{.Id}}", image)
    cert_digest = hashlib.sha256((SINK_DIR / "sink.pem").read_bytes()
                                 + (SINK_DIR / "sink.key").read_bytes()).hexdigest()
    wanted = hashlib.sha256(f"{image_id} {cert_digest} {address} {SINK_RUN_VERSION}".encode()).hexdigest()[:16]
    proc = docker("container", "inspect", "--format",
                  f'{{{{.State.Status}}}} {{{{index .Config.Labels "{SINK_LABEL}"}}}}', SINK_NAME, check=False)
    current = proc.stdout.decode().split() if proc.returncode == 0 else []
    if current == ["running", wanted] and sink_answers():
        log(f"{SINK_NAME} is current: smtp://{address}:{SINK_PORTS[0]}, https://{address}:{SINK_PORTS[1]}")
        return
    if current:
        docker("rm", "-f", SINK_NAME)
    docker("run", "-d", "--name", SINK_NAME, "--hostname", "alert-sink",
           "--label", "org.rpa-engine.testbed=alert-sink", "--label", f"{SINK_LABEL}={wanted}",
           "--restart", "unless-stopped",
           *[opt for port in SINK_PORTS for opt in ("-p", f"{address}:{port}:{port}")],
           "-v", f"{SINK_DIR / 'sink.pem'}:/certs/sink.pem:ro",
           "-v", f"{SINK_DIR / 'sink.key'}:/certs/sink.key:ro",
           # Reads the key as root, then runs as nobody (65534): SETUID/SETGID and nothing else.
           # A --tmpfs takes the mode of the image's directory but not its owner, hence uid/gid.
           "--tmpfs", "/data:uid=65534,gid=65534",
           "--cap-drop", "ALL", "--cap-add", "SETUID", "--cap-add", "SETGID",
           "--security-opt", "no-new-privileges", image)
    sink_ready()
    log(f"{'replaced' if current else 'started'} {SINK_NAME}: smtp://{address}:{SINK_PORTS[0]} "
        f"(STARTTLS, AUTH), https://{address}:{SINK_PORTS[1]}; CA {SINK_DIR / 'ca.pem'}")


# -------------------------------------------------------------------- registry
# A real registry for the app role's `pull` source (issue 18): Debian's docker-registry with TLS (a
# certificate from the alert sink's throwaway CA, for the bridge gateway a server reaches and for
# 127.0.0.1, where the controller pushes) and htpasswd (bcrypt) authentication. The reference app's
# image is pushed as rpa-engine/refapp:<image id>; the inventories read the address, the CA and the
# password from .testbed/registry/ (0600; a test-bed secret, made here, never in git).
REGISTRY_NAME = "rpa-registry"
REGISTRY_CONTEXT = IMAGES_DIR / "registry"
REGISTRY_DIR = STATE_DIR / "registry"
REGISTRY_DNS = "registry.test"
REGISTRY_PORT = 5000
REGISTRY_USER = "rpa-ci"
REGISTRY_REPO = "rpa-engine/refapp"
REGISTRY_LABEL = "org.rpa-engine.testbed.registry"
REGISTRY_RUN_VERSION = "1"


def registry_answers(address: str) -> bool:
    """The registry's /v2/ asks for a login (401) over TLS that the CA vouches for."""
    import urllib.error
    import urllib.request
    context = ssl.create_default_context(cafile=str(REGISTRY_DIR / "ca.pem"))
    try:
        urllib.request.urlopen(f"https://{address}:{REGISTRY_PORT}/v2/", context=context, timeout=3)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False
    return False


def ensure_registry_secrets(address: str) -> str:
    """The certificate (same CA as the sink's), the password (made once) and its htpasswd; returns the password."""
    REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(REGISTRY_DIR, 0o700)
    ensure_sink_certs(SINK_DIR, address)
    shutil.copyfile(SINK_DIR / "ca.pem", REGISTRY_DIR / "ca.pem")
    pem, key = REGISTRY_DIR / "registry.pem", REGISTRY_DIR / "registry.key"
    reason = "there is none"
    if pem.exists() and key.exists():
        verified = run(["openssl", "verify", "-CAfile", str(SINK_DIR / "ca.pem"), str(pem)],
                       check=False, capture=True).returncode == 0
        sans, not_after = cert_facts(openssl("x509", "-in", str(pem), "-noout", "-enddate",
                                             "-ext", "subjectAltName"))
        reason = (None if verified and f"IP:{address}" in sans and "IP:127.0.0.1" in sans
                  and not_after and not_after - time.time() > RENEW_DAYS * 86400 else "stale")
    if reason:
        make_sink_cert(REGISTRY_DIR, address, stem="registry", dns=REGISTRY_DNS, ca_dir=SINK_DIR,
                       extra_ips=("127.0.0.1",))
        log(f"made the registry's certificate for {address}, 127.0.0.1 and {REGISTRY_DNS} ({reason})")
    password_file = REGISTRY_DIR / "password"
    if not password_file.exists():
        _write_private(password_file, secrets.token_hex(24))
    password = password_file.read_text().strip()
    htpasswd = REGISTRY_DIR / "htpasswd"
    if not htpasswd.exists():
        # The password on stdin (-i), never on a command line.
        out = run(["docker", "run", "--rm", "-i", "--network", "none", image_name(REGISTRY_CONTEXT),
                   "htpasswd", "-iBn", REGISTRY_USER], capture=True, input_bytes=password.encode()).stdout
        _write_private(htpasswd, out.decode().strip() + "\n")
    return password


def push_refapp(password: str) -> str:
    """Push the reference app's image under a tag of its id; returns that tag."""
    image = image_name(REFAPP_DIR)
    tag = docker_out("image", "inspect", "--format", "{{.Id}}", image).split(":")[-1][:12]
    local = f"127.0.0.1:{REGISTRY_PORT}/{REGISTRY_REPO}:{tag}"
    # A throwaway client config: the login never stays in ~/.docker.
    with tempfile.TemporaryDirectory() as config:
        run(["docker", "--config", config, "login", f"127.0.0.1:{REGISTRY_PORT}", "-u", REGISTRY_USER,
             "--password-stdin"], capture=True, input_bytes=password.encode())
        # Layers the registry holds already are not sent again: a repeated push costs a second.
        docker("tag", image, local)
        run(["docker", "--config", config, "push", local], capture=True)
        log(f"pushed {image} as {REGISTRY_REPO}:{tag}")
    return tag


def ensure_service_container(name: str, label: str, wanted: str, answers, *run_args: str) -> None:
    """A test-bed service container on the controller's engine (registry, off-site host), replaced when
    its inputs' hash (the label) changed or it does not answer, then waited for (30 s)."""
    proc = docker("container", "inspect", "--format",
                  f'{{{{.State.Status}}}} {{{{index .Config.Labels "{label}"}}}}', name, check=False)
    current = proc.stdout.decode().split() if proc.returncode == 0 else []
    if current == ["running", wanted] and answers():
        return
    if current:
        docker("rm", "-f", name)
    docker("run", "-d", "--name", name, "--label", f"{label}={wanted}", "--restart", "unless-stopped", *run_args)
    deadline = time.monotonic() + 30
    while not answers():
        if time.monotonic() > deadline:
            logs = docker("logs", "--tail", "40", name, check=False)
            raise TestbedError(f"{name} did not answer within 30 s\n"
                               f"{(logs.stdout + logs.stderr).decode(errors='replace')}")
        time.sleep(0.3)


def cmd_registry(_args: argparse.Namespace) -> None:
    build_context(REGISTRY_CONTEXT)
    image = image_name(REGISTRY_CONTEXT)
    address = bridge_gateway(docker_out("network", "inspect", "bridge"))
    password = ensure_registry_secrets(address)
    image_id = docker_out("image", "inspect", "--format", "{{.Id}}", image)
    digest = hashlib.sha256(b"".join((REGISTRY_DIR / name).read_bytes()
                                     for name in ("registry.pem", "registry.key", "htpasswd"))).hexdigest()
    wanted = hashlib.sha256(f"{image_id} {digest} {address} {REGISTRY_RUN_VERSION}".encode()).hexdigest()[:16]
    ensure_service_container(
        REGISTRY_NAME, REGISTRY_LABEL, wanted, lambda: registry_answers(address),
        "--hostname", "registry", "--label", "org.rpa-engine.testbed=registry",
        "-p", f"{address}:{REGISTRY_PORT}:{REGISTRY_PORT}", "-p", f"127.0.0.1:{REGISTRY_PORT}:{REGISTRY_PORT}",
        "-v", f"{REGISTRY_DIR / 'registry.pem'}:/certs/registry.pem:ro",
        "-v", f"{REGISTRY_DIR / 'registry.key'}:/certs/registry.key:ro",
        "-v", f"{REGISTRY_DIR / 'htpasswd'}:/auth/htpasswd:ro",
        "-v", "rpa-registry-data:/data",
        # root, to read the 0600 files it is given as their owner, and nothing more.
        "--user", "0:0", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", image)
    tag = push_refapp(password)
    (REGISTRY_DIR / "address").write_text(f"{address}:{REGISTRY_PORT}")
    (REGISTRY_DIR / "refapp").write_text(f"{address}:{REGISTRY_PORT}/{REGISTRY_REPO}:{tag}")
    log(f"{REGISTRY_NAME}: https://{address}:{REGISTRY_PORT} (TLS, login {REGISTRY_USER}); "
        f"{REGISTRY_REPO}:{tag}; CA {REGISTRY_DIR / 'ca.pem'}")


# --------------------------------------------------------------------- offsite
# The off-site host of pgBackRest's repository (issue 17): OpenSSH's internal-sftp for one key-only
# user, published on the bridge gateway, where a server's Postgres container reaches it through the
# server's NAT. Its host key (stable across runs, so the inventories' known host stays true) and the
# client key the servers use are made here into .testbed/offsite/ (0600, never in git); the
# repository's passphrase is the inventory's vault secret, the repository a volume.
OFFSITE_NAME = "rpa-offsite"
OFFSITE_CONTEXT = IMAGES_DIR / "offsite"
OFFSITE_DIR = STATE_DIR / "offsite"
OFFSITE_PORT = 2299
OFFSITE_LABEL = "org.rpa-engine.testbed.offsite"
OFFSITE_RUN_VERSION = "1"


def ensure_offsite_keys() -> None:
    OFFSITE_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(OFFSITE_DIR, 0o700)
    for stem, comment in (("ssh_host_ed25519_key", "rpa-offsite"), ("id_ed25519", "pgbackrest@rpa-servers")):
        key = OFFSITE_DIR / stem
        if not key.exists():
            # PEM, which libssh2 (pgBackRest's SFTP) reads whatever its crypto backend.
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], capture=True)
    shutil.copyfile(OFFSITE_DIR / "id_ed25519.pub", OFFSITE_DIR / "authorized_keys")


def offsite_answers(address: str) -> bool:
    """sshd greets on the published port."""
    import socket
    try:
        with socket.create_connection((address, OFFSITE_PORT), timeout=3) as sock:
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def cmd_offsite(_args: argparse.Namespace) -> None:
    build_context(OFFSITE_CONTEXT)
    image = image_name(OFFSITE_CONTEXT)
    address = bridge_gateway(docker_out("network", "inspect", "bridge"))
    ensure_offsite_keys()
    image_id = docker_out("image", "inspect", "--format", "{{.Id}}", image)
    digest = hashlib.sha256(b"".join((OFFSITE_DIR / name).read_bytes()
                                     for name in ("ssh_host_ed25519_key", "authorized_keys"))).hexdigest()
    wanted = hashlib.sha256(f"{image_id} {digest} {address} {OFFSITE_RUN_VERSION}".encode()).hexdigest()[:16]
    ensure_service_container(
        OFFSITE_NAME, OFFSITE_LABEL, wanted, lambda: offsite_answers(address),
        "--hostname", "offsite", "--label", "org.rpa-engine.testbed=offsite",
        "-p", f"{address}:{OFFSITE_PORT}:2222",
        "-v", f"{OFFSITE_DIR / 'ssh_host_ed25519_key'}:/etc/ssh/keys/ssh_host_ed25519_key:ro",
        "-v", f"{OFFSITE_DIR / 'authorized_keys'}:/etc/ssh/keys/authorized_keys:ro",
        "-v", "rpa-offsite-repo:/repo",
        # sshd's privilege separation: root with only the capabilities it uses.
        "--cap-drop", "ALL", "--cap-add", "SETUID", "--cap-add", "SETGID", "--cap-add", "SYS_CHROOT",
        "--cap-add", "CHOWN", "--cap-add", "DAC_OVERRIDE", "--cap-add", "KILL",
        "--security-opt", "no-new-privileges", image)
    host_key = (OFFSITE_DIR / "ssh_host_ed25519_key.pub").read_text().split()
    (OFFSITE_DIR / "address").write_text(f"{address}:{OFFSITE_PORT}")
    (OFFSITE_DIR / "known_host").write_text(f"{host_key[0]} {host_key[1]}")
    log(f"{OFFSITE_NAME}: sftp://pgbackrest@{address}:{OFFSITE_PORT}/repo (key {OFFSITE_DIR / 'id_ed25519'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prereqs").set_defaults(func=cmd_prereqs)
    sub.add_parser("engine").set_defaults(func=cmd_engine)
    sub.add_parser("images").set_defaults(func=cmd_images)
    up = sub.add_parser("up")
    up.add_argument("name")
    up.add_argument("--ssh-port", type=int, required=True)
    up.add_argument("--http-port", type=int, required=True)
    up.add_argument("--https-port", type=int, required=True)
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down")
    down.add_argument("name")
    down.set_defaults(func=cmd_down)
    load = sub.add_parser("load-images")
    load.add_argument("name")
    load.add_argument("images", nargs="*")
    load.set_defaults(func=cmd_load_images)
    save = sub.add_parser("save-images")
    save.add_argument("--output", default=str(STATE_DIR / "images"), help="directory of the archives")
    save.set_defaults(func=cmd_save_images)
    sub.add_parser("sink").set_defaults(func=cmd_sink)
    sub.add_parser("registry").set_defaults(func=cmd_registry)
    sub.add_parser("offsite").set_defaults(func=cmd_offsite)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
