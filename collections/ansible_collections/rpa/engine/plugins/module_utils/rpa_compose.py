# -*- coding: utf-8 -*-
"""Pure logic of the rpa_compose module: no Docker, no Ansible, unit-tested.

How role fragments become the one Compose project
-------------------------------------------------
Each role owns a *fragment*: the services, volumes and networks of its own
services (``compose.d/<role>.yml``) and the variables they interpolate
(``env.d/<role>.json``, mode 0600: they hold secrets).  The module merges all
fragments into ONE ``docker-compose.yml`` and ONE ``.env`` in the project
directory.  We render one file rather than using Compose ``include:`` because
the deployer runs ``docker compose --project-directory /opt/rpa-engine
-f /repo/docker-compose.yml --env-file /repo/.env`` from inside a container
where the project lives at /repo: with a single file and a single env file,
interpolation and relative paths mean the same thing there and on the host,
on every Compose release since 2.20 (``include`` changed its interpolation
rules between releases, see docker/compose#10913, #11002, #11741).
"""

from __future__ import annotations

import hashlib
import json
import re
import time

FRAGMENT_KEYS = ("services", "volumes", "networks")
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_FRAGMENT_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class ComposeError(Exception):
    """Bad input or an inconsistent project; the message says which and how to fix it."""


# ------------------------------------------------------------------ assembly
def check_fragment_name(name):
    if not isinstance(name, str) or not _FRAGMENT_NAME.match(name):
        raise ComposeError("fragment %r must be lower-case letters, digits, '-' or '_'" % (name,))


def merge_fragments(project_name, fragments):
    """One Compose project from ``{fragment name: {services, volumes, networks}}``.

    Deterministic (sorted by fragment, then by key) so the same fragments always
    give the same file; a name defined by two fragments is an error naming both.
    """
    merged = {"name": project_name}
    owners = {key: {} for key in FRAGMENT_KEYS}
    for frag_name in sorted(fragments):
        frag = fragments[frag_name] or {}
        if not isinstance(frag, dict):
            raise ComposeError("fragment %s must be a mapping, got %s" % (frag_name, type(frag).__name__))
        unknown = sorted(set(frag) - set(FRAGMENT_KEYS))
        if unknown:
            raise ComposeError("fragment %s has top-level keys %s; only %s are allowed"
                               % (frag_name, ", ".join(unknown), ", ".join(FRAGMENT_KEYS)))
        for key in FRAGMENT_KEYS:
            for name, value in sorted((frag.get(key) or {}).items()):
                if name in owners[key]:
                    raise ComposeError("%s %r is defined by both fragment %s and fragment %s"
                                       % (key[:-1], name, owners[key][name], frag_name))
                owners[key][name] = frag_name
                merged.setdefault(key, {})[name] = value
    return merged


def render_env(env_fragments):
    """The project's .env from ``{fragment: {VAR: value}}``.

    Values are single-quoted so Compose takes them literally (no ``$``
    interpolation inside), which is why a value may not contain a single
    quote or a newline: such a value is rejected, never silently mangled.
    """
    values, owners = {}, {}
    for frag_name in sorted(env_fragments):
        for key, value in sorted((env_fragments[frag_name] or {}).items()):
            if not _ENV_KEY.match(key):
                raise ComposeError("environment variable %r of fragment %s must match [A-Z_][A-Z0-9_]*"
                                   % (key, frag_name))
            if key in owners:
                raise ComposeError("environment variable %s is set by both fragment %s and fragment %s"
                                   % (key, owners[key], frag_name))
            text = "true" if value is True else "false" if value is False else str(value)
            if "'" in text or "\n" in text or "\r" in text:
                raise ComposeError("the value of %s (fragment %s) contains a single quote or a newline, "
                                   "which a Compose .env cannot hold literally" % (key, frag_name))
            owners[key] = frag_name
            values[key] = text
    lines = ["# Managed by Ansible (rpa_compose): generated from env.d/*.json. Holds secrets: mode 0600."]
    lines += ["%s='%s'" % (key, values[key]) for key in sorted(values)]
    return "\n".join(lines) + "\n"


def changed_env_keys(old_text, new_text):
    """Names (never values) of the variables that differ between two .env texts."""
    def parse(text):
        out = {}
        for line in (text or "").splitlines():
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                out[key] = value
        return out
    old, new = parse(old_text), parse(new_text)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


# --------------------------------------------------------- observing Docker
def parse_ps_json(text):
    """``docker compose ps --format json``: a JSON array (Compose < 2.21) or one object per line."""
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def parse_config_hashes(text):
    """``docker compose config --hash 'svc ...'`` output: ``{service: hash}``."""
    hashes = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            hashes[parts[0]] = parts[1]
    return hashes


def container_state(inspect):
    """The facts the gate needs from one ``docker inspect`` object."""
    state = inspect.get("State") or {}
    health = state.get("Health") or {}
    log = health.get("Log") or []
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    last = log[-1] if log else {}
    return {
        "id": inspect.get("Id", ""),
        "name": (inspect.get("Name") or "").lstrip("/"),
        "service": labels.get("com.docker.compose.service", ""),
        "oneoff": labels.get("com.docker.compose.oneoff") == "True",
        "config_hash": labels.get("com.docker.compose.config-hash", ""),
        "image_id": inspect.get("Image", ""),
        "image_ref": (inspect.get("Config") or {}).get("Image", ""),
        "status": state.get("Status", ""),
        "restarting": bool(state.get("Restarting")),
        "exit_code": state.get("ExitCode", 0),
        "oom_killed": bool(state.get("OOMKilled")),
        "error": state.get("Error", ""),
        "restart_count": inspect.get("RestartCount", 0),
        "health": health.get("Status") if health else None,
        "health_output": (last.get("Output") or "").strip(),
        "health_exit_code": last.get("ExitCode"),
    }


READY, WAITING, FAILED = "ready", "waiting", "failed"


def assess(state, baseline_restarts=0):
    """(verdict, reason) for one container.

    Fails fast on what will not heal by waiting: an exit, a restart since the
    gate began (a crash loop restarts, then runs again for a moment - the
    count catches what a single look at the status would miss), a dead or
    OOM-killed container, or ``unhealthy``.
    """
    if state is None:
        return FAILED, "no container exists for the service"
    status = state["status"]
    if state["oom_killed"]:
        return FAILED, "was killed for running out of memory (OOMKilled)"
    if status in ("exited", "dead"):
        return FAILED, "exited with code %s%s" % (state["exit_code"],
                                                  ": " + state["error"] if state["error"] else "")
    if state["restarting"] or status == "restarting" or state["restart_count"] > baseline_restarts:
        restarts = state["restart_count"] - baseline_restarts
        if status == "running":
            # Docker resets ExitCode when it starts the container again: a
            # "last exit code 0" here would be a lie.
            return FAILED, "is crash-looping (restarted %d times; running again for the moment)" % restarts
        return FAILED, "is crash-looping (restarted %d times, last exit code %s)" % (restarts, state["exit_code"])
    if state["health"] == "unhealthy":
        return FAILED, "is unhealthy: %s" % (state["health_output"] or "health check failed")
    if status != "running":
        return WAITING, "is %s" % status
    if state["health"] in (None, "healthy"):
        return READY, "is healthy" if state["health"] else "is running (no health check)"
    return WAITING, "health is %s" % state["health"]


class Gate(object):
    """Decides, one observation at a time, whether a set of services passed.

    Every service must be READY continuously for ``stable_seconds``; any
    FAILED verdict ends the gate at once; past ``timeout`` it fails naming
    the services that never became ready.
    """

    def __init__(self, services, stable_seconds, timeout, started_at):
        self.services = list(services)
        self.stable_seconds = stable_seconds
        self.deadline = started_at + timeout
        self.ready_since = None
        self.last = {}

    def observe(self, verdicts, now):
        """``verdicts``: {service: (verdict, reason)}. Returns ("pass"|"wait"|"fail", message)."""
        self.last = verdicts
        failed = [s for s in self.services if verdicts.get(s, (FAILED, "not found"))[0] == FAILED]
        if failed:
            return "fail", "; ".join("%s %s" % (s, verdicts.get(s, (FAILED, "has no container"))[1])
                                     for s in failed)
        if all(verdicts[s][0] == READY for s in self.services):
            if self.ready_since is None:
                self.ready_since = now
            if now - self.ready_since >= self.stable_seconds:
                return "pass", "all services ready for %ss" % self.stable_seconds
        else:
            self.ready_since = None
        if now >= self.deadline:
            waiting = [s for s in self.services if verdicts[s][0] != READY]
            return "fail", "timed out waiting for %s" % "; ".join(
                "%s (%s)" % (s, verdicts[s][1]) for s in waiting)
        return "wait", ""


def recreated_services(before, after):
    """Services whose container is new: {service: container id} before vs after ``up``."""
    return sorted(s for s, cid in after.items() if before.get(s) != cid)


def project_digest(compose_text, env_text):
    """What the cached config hashes were computed from: the live docker-compose.yml and .env."""
    digest = hashlib.sha256()
    for text in (compose_text or "", env_text or ""):
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def cached_hashes(cache_text, digest):
    """``{service: config hash}`` from the cache file when it describes these project files, else None.

    Compose's config hashes are what ``up`` compares with each container's
    ``com.docker.compose.config-hash`` label. Computing them costs a Compose
    run; caching them next to the files they came from lets an unchanged
    project be checked with ``docker inspect`` alone.
    """
    try:
        cache = json.loads(cache_text or "")
    except ValueError:
        return None
    if not isinstance(cache, dict) or cache.get("digest") != digest or not isinstance(cache.get("hashes"), dict):
        return None
    return cache["hashes"]


def render_hash_cache(digest, hashes):
    return json.dumps({"digest": digest, "hashes": hashes}, sort_keys=True, indent=2) + "\n"


def normalize_image_ref(ref):
    """A reference as ``docker image ls`` spells it: Docker Hub's prefixes dropped, ``:latest`` made explicit."""
    ref = ref or ""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    if "@" in ref:
        return ref
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:  # no tag, or the colon was a registry's port
        return ref + ":latest"
    return ref


def parse_image_ls(text):
    """``docker image ls --no-trunc --digests --format '{{json .}}'``: ``{reference: image id}``.

    One line per tag (and per digest); both spellings of a reference map to the image it names now.
    """
    ids = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        obj = json.loads(line)
        repo, image_id = obj.get("Repository", ""), obj.get("ID", "")
        if not repo or repo == "<none>" or not image_id:
            continue
        if obj.get("Tag") and obj["Tag"] != "<none>":
            ids[repo + ":" + obj["Tag"]] = image_id
        if obj.get("Digest") and obj["Digest"] != "<none>":
            ids[repo + "@" + obj["Digest"]] = image_id
    return ids


def settled(services, states, hashes, image_ids):
    """True when ``up`` would leave every service as it is and the gate would pass at once.

    Each service has a running container that is healthy (or has no health
    check), whose config hash is the project's, and whose image is the one its
    reference names now (a re-pointed tag makes Compose recreate). Anything
    else takes the full path: up, gate, rollback.
    """
    for service in services:
        st = states.get(service)
        if st is None or st["status"] != "running" or st["restarting"] or st["health"] not in (None, "healthy"):
            return False
        if not st["config_hash"] or hashes.get(service) != st["config_hash"]:
            return False
        if not st["image_id"] or image_ids.get(normalize_image_ref(st["image_ref"])) != st["image_id"]:
            return False
    return True


def would_recreate(running_hashes, candidate_hashes):
    """Check mode: services Compose would create or recreate for the candidate definition."""
    return sorted(s for s, h in candidate_hashes.items() if running_hashes.get(s) != h)


# ------------------------------------------------------- maintenance silence
# The monitoring role writes MAINTENANCE_FILE (no secret: Alertmanager's loopback URL, the server's name
# and the alerts a recreate sets off). While the module recreates containers it silences those alerts in
# Alertmanager and expires the silence afterwards, whether the gate passed, failed or rolled back; the
# silence lapses by itself at its end should the run die in between.
MAINTENANCE_FILE = ".maintenance-silence.json"
SILENCE_CREATOR = "rpa_compose"


def maintenance_spec(text):
    """The maintenance settings from the file's text, or None when it is absent or unusable."""
    try:
        spec = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(spec, dict) or not spec.get("url") or not spec.get("server") or not spec.get("alerts"):
        return None
    return spec


def silence_request(spec, fragment, services, now, seconds):
    """Alertmanager's POST /api/v2/silences body for a recreate of services starting at now (epoch seconds)."""
    def stamp(epoch):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    return {
        "matchers": [
            {"name": "server", "value": spec["server"], "isRegex": False, "isEqual": True},
            {"name": "alertname", "value": "|".join(re.escape(a) for a in spec["alerts"]), "isRegex": True,
             "isEqual": True},
        ],
        "startsAt": stamp(now),
        "endsAt": stamp(now + seconds),
        "createdBy": SILENCE_CREATOR,
        "comment": "planned work: fragment %s recreating %s" % (fragment, ", ".join(services)),
    }


# ------------------------------------------------------ start-first rollouts
# A start-first service publishes a range of two host ports and Caddy lists both as upstreams: its
# replacement starts beside the running container (Compose's --scale 2 --no-recreate gives it the free
# port of the range), passes the gate, and only then is the old container stopped - gracefully, its
# in-flight requests finished - and removed. Caddy never has zero healthy upstreams.
def diverged(state, candidate_hash, image_ids):
    """True when ``up`` would replace this running container: another config hash, or its tag re-pointed."""
    if not state["config_hash"] or state["config_hash"] != candidate_hash:
        return True
    return not state["image_id"] or image_ids.get(normalize_image_ref(state["image_ref"])) != state["image_id"]


def start_first_plan(services, start_first, states, candidate_hashes, image_ids, recreate=()):
    """``{service: old state}`` of the start-first services to roll out beside their running container.

    ``states``: every container of the project (a list: a service may have two). Only a service with
    exactly one container, running and healthy (or without a health check), that would be replaced (or is
    asked to be, ``recreate``) rolls out start-first: with none there is nothing to keep serving, and with
    several (an interrupted rollout) a plain ``up`` converges it to one first.
    """
    plan = {}
    for service in services:
        if service not in start_first:
            continue
        mine = [st for st in states if st["service"] == service and not st.get("oneoff")]
        if len(mine) != 1:
            continue
        state = mine[0]
        if state["status"] != "running" or state["restarting"] or state["health"] not in (None, "healthy"):
            continue
        if service in recreate or diverged(state, candidate_hashes.get(service), image_ids):
            plan[service] = state
    return plan


def canonical_name(project_name, service):
    """The name Compose gives a service's first container, which tools and operators use."""
    return "%s-%s-1" % (project_name, service)


def host_ports(inspect):
    """``{"8000/tcp": [host ports]}`` of one ``docker inspect`` object (published ports only)."""
    out = {}
    for key, bindings in ((inspect.get("NetworkSettings") or {}).get("Ports") or {}).items():
        ports = sorted(int(b["HostPort"]) for b in (bindings or []) if b.get("HostPort"))
        if ports:
            out[key] = ports
    return out


def service_publishes_range(service):
    """Whether a Compose service definition publishes a host port range (``127.0.0.1:8000-8001:8000``)."""
    for port in service.get("ports") or []:
        text = port if isinstance(port, str) else str((port or {}).get("published", ""))
        parts = text.split(":")
        host = parts[-2] if len(parts) >= 2 else (text if not isinstance(port, str) else "")
        if "-" in host:
            return True
    return False
