#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module rpa_compose: apply one role's services to the project's one Compose project, gated on health."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rpa_compose
short_description: Apply a role's services to the one Compose project, wait until they are healthy, roll back if not
description:
  - Each role owns a I(fragment) of the Compose project - the services, volumes and networks of its
    own services and the variables they interpolate. This module stores the fragment
    (C(compose.d/FRAGMENT.yml), C(env.d/FRAGMENT.json) mode 0600), merges every fragment into the one
    C(docker-compose.yml) and C(.env) (mode 0600) of the project directory, validates the result with
    C(docker compose config) before anything goes live, and runs C(docker compose up -d) for the
    fragment's services. Compose recreates only what changed.
  - It then waits until every service is healthy (or running, for a service without a health check)
    and stays so for I(stable_seconds). It fails fast - without sitting out I(timeout) - on an exit,
    a crash loop (a restart since the gate began), an OOM kill, or C(unhealthy), naming the service,
    its last health-check output and the tail of its logs.
  - Planned work pages nobody. When the project directory holds C(.maintenance-silence.json) (the monitoring
    role writes it - Alertmanager's loopback URL, the server's name, the alerts a recreate sets off), the module
    silences those alerts of this server in Alertmanager before it brings anything up, and expires the silence
    when it is done - gate passed, failed or rolled back. The silence ends by itself after four times I(timeout)
    plus ten minutes should the run die. Without the file, or with Alertmanager not answering, it silences nothing.
  - Start-first, for the services in I(start_first) (stateless HTTP services that publish a range of two host
    ports, both listed as upstreams of the proxy in front) - when such a service would be replaced, its new
    container starts beside the running one (C(docker compose up --no-recreate --scale SERVICE=2) - Compose
    gives it the range's free port), passes the same gate, and only then is the old container stopped with
    its own stop signal and grace period (its in-flight requests finish) and removed; the new one takes the
    old one's name. A new container that fails the gate is removed and the old one keeps serving, untouched.
    The proxy's active health checks must be more frequent than I(stable_seconds), so that it has seen the
    new container healthy before the old one goes.
  - With I(rollback=true) a failure restores the previous fragment, project files and images, brings
    them back up, confirms their health, and then fails saying that it rolled back and why.
  - One file, not Compose C(include), because the deployer runs
    C(docker compose --project-directory PROJECT_DIR -f /repo/docker-compose.yml --env-file /repo/.env)
    from a container where the project lives at C(/repo); see C(plugins/module_utils/rpa_compose.py).
  - Check mode reports which services would be created or recreated (from C(docker compose config --hash),
    the hash Compose itself compares) without pulling, building or starting anything. Diff mode shows the
    change of the fragment's definition and the names - never the values - of changed variables.
  - The no-change path runs no Compose at all. After each successful apply the module keeps Compose's
    config hash of every service in C(.config-hashes.json) (mode 0600), tagged with a digest of the
    C(docker-compose.yml) and C(.env) they came from. When a later run would write the very same files,
    and every service of the fragment runs healthy with that config hash and with the image its
    reference names now, the module reports no change after one C(docker ps), one C(docker inspect) and
    one C(docker image ls). Anything else - a stopped, unhealthy or missing container, a changed hash, a
    re-pointed tag, a cache from other files - takes the full path (validate, up, gate, rollback).
version_added: "1.0.0"
author:
  - rpa-engine infrastructure team (@rpa-engine)
options:
  project_dir:
    description: The Compose project directory (the roles pass C(rpa_project_dir), set once in group_vars).
    type: path
    required: true
  project_name:
    description: The Compose project name (the roles pass C(rpa_project_name)).
    type: str
    required: true
  fragment:
    description: Name of this role's fragment (usually the role name).
    type: str
    required: true
  definition:
    description:
      - The fragment - a mapping with C(services) and optionally C(volumes) and C(networks).
      - Omitted, the fragment already stored on the host is applied again - with its stored I(env) unless
        I(env) is given (to start services that a playbook stopped, through the gate; or to give the
        services new credentials without rendering the definition again, as a secret rotation does).
    type: dict
  env:
    description:
      - Variables the fragment interpolates (C(${VAR})); stored mode 0600, never returned or logged.
      - Omitted with I(definition) given, the fragment has none.
    type: dict
  services:
    description: Services to bring up and gate; defaults to every service of the fragment.
    type: list
    elements: str
  stable_seconds:
    description: How long every service must stay ready before the gate passes.
    type: int
    default: 5
  timeout:
    description: Seconds to wait for all services to become ready before failing.
    type: int
    default: 180
  poll_interval:
    description:
      - Seconds between two observations (one C(docker inspect) of the services' containers each).
      - A gate overshoots its readiness and stability moments by up to this much.
    type: float
    default: 0.5
  rollback:
    description: On failure, restore the previous definition and images and bring them back up.
    type: bool
    default: true
  start_first:
    description:
      - Services rolled out start-first (see above); each must publish a range of two host ports.
      - A service with no running container, or with more than one (an interrupted rollout), is brought up by
        a plain C(up) instead, which converges it to one container.
    type: list
    elements: str
    default: []
  recreate:
    description:
      - Services to replace even when nothing changed (start-first ones without downtime) - a restart that
        nobody notices, or a measurement of one.
    type: list
    elements: str
    default: []
  exclusive_env:
    description:
      - Interpolation variables (C(.env)) whose change makes the start-first services be replaced stop-first
        instead - an old and a new container must not serve side by side, for example with a new JWT signing
        key (the old container would refuse the new one's tokens).
    type: list
    elements: str
    default: []
  pull:
    description: Compose's C(--pull) policy for C(up).
    type: str
    choices: [missing, never, always]
    default: missing
attributes:
  check_mode:
    support: full
    description: Reports C(would_recreate) from Compose's own config hashes; pulls, builds and starts nothing.
  diff_mode:
    support: full
    description: Shows the change of the fragment's definition and the names, never the values, of changed variables.
requirements:
  - Docker Engine with the Compose v2 plugin (2.20 or newer)
  - python3-yaml on the managed host
"""

EXAMPLES = r"""
- name: Ensure Redis runs the rendered definition and is healthy.
  rpa.engine.rpa_compose:
    project_dir: "{{ rpa_project_dir }}"
    project_name: "{{ rpa_project_name }}"
    fragment: redis
    definition: "{{ lookup('ansible.builtin.template', 'compose.yml.j2') | from_yaml }}"
    env:
      REDIS_PASSWORD: "{{ redis_password }}"
    stable_seconds: 5
    timeout: 120
  no_log: false  # env is already no_log inside the module

- name: Show what would be recreated, touching nothing.
  rpa.engine.rpa_compose:
    project_dir: "{{ rpa_project_dir }}"
    project_name: "{{ rpa_project_name }}"
    fragment: postgres
    definition: "{{ __postgres_definition }}"
  check_mode: true
  diff: true
"""

RETURN = r"""
recreated:
  description: Services whose container was created or replaced by this run.
  type: list
  elements: str
  returned: success
  sample: [pgbouncer]
rolled_out:
  description: Services replaced start-first, with the host port their new container took.
  type: dict
  returned: success
  sample: {backend: 8001}
started:
  description: Services that were not running before and run now (for example after a docker kill without restart).
  type: list
  elements: str
  returned: success
silenced:
  description: Whether Alertmanager silenced this server's alerts while the services were brought up (and it is lifted now).
  type: bool
  returned: when the services were brought up
would_recreate:
  description: In check mode, services Compose would create or recreate.
  type: list
  elements: str
  returned: check mode
files_changed:
  description: Project files (fragment, docker-compose.yml, .env) this run rewrote or would rewrite.
  type: list
  elements: str
  returned: always
env_changed:
  description: Names of interpolation variables whose value changed (values are never returned).
  type: list
  elements: str
  returned: always
services:
  description: Last observed state of each gated service.
  type: dict
  returned: always
rolled_back:
  description: True when the new definition failed and the previous one was restored and is healthy.
  type: bool
  returned: failure
"""

import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.rpa.engine.plugins.module_utils.rpa_compose import (
    FAILED,
    MAINTENANCE_FILE,
    ComposeError,
    Gate,
    assess,
    changed_env_keys,
    check_fragment_name,
    container_state,
    cached_hashes,
    canonical_name,
    host_ports,
    merge_fragments,
    parse_config_hashes,
    service_publishes_range,
    parse_image_ls,
    project_digest,
    recreated_services,
    render_env,
    render_hash_cache,
    maintenance_spec,
    silence_request,
    settled,
    start_first_plan,
    would_recreate,
)

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - reported through fail_json
    HAS_YAML = False


def read(path):
    try:
        with open(path, "r") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def maintenance_silence(module, project, services):
    """The id of a silence made in Alertmanager for this recreate, or None (no monitoring, or it is not up)."""
    spec = maintenance_spec(read(os.path.join(project.dir, MAINTENANCE_FILE)))
    if spec is None:
        return None
    # Long enough for the gate and a rollback's gate; it lapses by itself should the run die.
    # A start-first run may take three gates (rollout, rollback) and stop grace periods.
    seconds = 4 * module.params["timeout"] + 600
    body = silence_request(spec, module.params["fragment"], services, time.time(), seconds)
    try:
        answer = open_url(spec["url"].rstrip("/") + "/api/v2/silences", data=json.dumps(body), method="POST",
                          headers={"Content-Type": "application/json"}, timeout=5)
        return (spec["url"], json.loads(answer.read())["silenceID"])
    except Exception as exc:  # Alertmanager down or not yet deployed: nothing to silence
        module.warn("no maintenance silence (Alertmanager at %s: %s)" % (spec["url"], exc))
        return None


def end_silence(module, silence):
    """Expire the silence; retried while Alertmanager restarts (this run may have recreated it)."""
    if silence is None:
        return
    url, silence_id = silence
    deadline = time.time() + 30
    while True:
        try:
            open_url(url.rstrip("/") + "/api/v2/silence/" + silence_id, method="DELETE", timeout=5)
            return
        except Exception:
            if time.time() > deadline:
                return
            time.sleep(1)


class Project(object):
    """The files and Docker commands of one Compose project."""

    def __init__(self, module):
        self.m = module
        p = module.params
        self.dir = p["project_dir"]
        self.name = p["project_name"]
        self.fragment = p["fragment"]
        self.compose_file = os.path.join(self.dir, "docker-compose.yml")
        self.env_file = os.path.join(self.dir, ".env")
        self.frag_file = os.path.join(self.dir, "compose.d", self.fragment + ".yml")
        self.env_frag_file = os.path.join(self.dir, "env.d", self.fragment + ".json")
        # Compose's config hash of every service, for the files they came from.
        self.hash_cache = os.path.join(self.dir, ".config-hashes.json")

    # ---------------------------------------------------------------- files
    def load_fragments(self, sub, ext, loader):
        out = {}
        folder = os.path.join(self.dir, sub)
        if os.path.isdir(folder):
            for entry in sorted(os.listdir(folder)):
                if entry.endswith(ext):
                    out[entry[:-len(ext)]] = loader(read(os.path.join(folder, entry)) or "") or {}
        return out

    def render(self, definition, env):
        """{path: (text, mode)} of every project file for the new fragment."""
        fragments = self.load_fragments("compose.d", ".yml", yaml.safe_load)
        fragments[self.fragment] = definition
        env_fragments = self.load_fragments("env.d", ".json", lambda t: json.loads(t) if t.strip() else {})
        env_fragments[self.fragment] = env
        merged = merge_fragments(self.name, fragments)
        header = ("# Managed by Ansible (rpa_compose): merged from compose.d/*.yml.\n"
                  "# Edit the roles, not this file. Secrets are interpolated from .env.\n")
        return {
            self.frag_file: (yaml.safe_dump(definition, sort_keys=True, default_flow_style=False), 0o640),
            self.env_frag_file: (json.dumps(env, sort_keys=True, indent=2) + "\n", 0o600),
            # Sorted keys: the same fragments give the same bytes whichever role runs.
            self.compose_file: (header + yaml.safe_dump(merged, sort_keys=True, default_flow_style=False), 0o640),
            self.env_file: (render_env(env_fragments), 0o600),
        }

    def write(self, files):
        """Write {path: (text or None, mode)} atomically; None removes the file."""
        for path, (text, mode) in files.items():
            if text is None:
                if os.path.exists(path):
                    os.unlink(path)
                continue
            folder = os.path.dirname(path)
            if not os.path.isdir(folder):
                os.makedirs(folder, 0o750)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rpa_compose.")
            try:
                os.fchmod(fd, mode)
                os.write(fd, text.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            self.m.atomic_move(tmp, path)
            os.chmod(path, mode)

    # --------------------------------------------------------------- docker
    def compose(self, args, compose_file=None, env_file=None, check_rc=True):
        cmd = ["docker", "compose", "--project-name", self.name, "--project-directory", self.dir,
               "-f", compose_file or self.compose_file, "--env-file", env_file or self.env_file] + args
        rc, out, err = self.m.run_command(cmd)
        if check_rc and rc != 0:
            raise CommandFailed(cmd, rc, out, err)
        return rc, out, err

    def inspect_all(self):
        """``docker inspect`` of every container of the project (a list; [] when one vanished meanwhile)."""
        rc, out, err = self.m.run_command(
            ["docker", "ps", "-a", "-q", "--no-trunc",
             "--filter", "label=com.docker.compose.project=%s" % self.name])
        if rc != 0:
            raise CommandFailed(["docker", "ps"], rc, out, err)
        ids = out.split()
        if not ids:
            return []
        rc, out, err = self.m.run_command(["docker", "inspect"] + ids)
        # A container that vanished between ps and inspect makes rc 1; the others are still printed.
        try:
            return json.loads(out) if out.strip().startswith("[") else []
        except ValueError:
            return []

    def containers(self, services, pick=None):
        """{service: container_state} for the project's containers of these services.

        ``pick``: {service: container id} - during a start-first rollout a service has two containers,
        and the gate watches the new one.
        """
        states = {}
        for obj in self.inspect_all():
            state = container_state(obj)
            service = state["service"]
            if state["oneoff"]:  # `compose run` containers are not the service's
                continue
            if service in services and (not pick or service not in pick or pick[service] == state["id"]):
                states[service] = state
        return states

    def logs(self, container_id, lines=25):
        rc, out, err = self.m.run_command(["docker", "logs", "--tail", str(lines), container_id])
        return (out + err).strip()

    def image_ids(self):
        """{reference: image id} of every image on the host, from one listing."""
        rc, out, err = self.m.run_command(["docker", "image", "ls", "--no-trunc", "--digests",
                                           "--format", "{{json .}}"])
        if rc != 0:
            raise CommandFailed(["docker", "image", "ls"], rc, out, err)
        return parse_image_ls(out)

    def image_id(self, ref):
        rc, out, err = self.m.run_command(["docker", "image", "inspect", "--format", "{{.Id}}", ref])
        return out.strip() if rc == 0 else None


def publishes_range(files, project, service):
    """Whether the service, as the project files about to go live define it, publishes a range of host
    ports - what a start-first replacement needs (a stored fragment from before may publish one port)."""
    merged = yaml.safe_load(files[project.compose_file][0]) or {}
    return service_publishes_range((merged.get("services") or {}).get(service) or {})


class CommandFailed(Exception):
    def __init__(self, cmd, rc, out, err):
        Exception.__init__(self, "command failed: %s" % " ".join(cmd))
        self.cmd, self.rc, self.out, self.err = cmd, rc, out, err


def gate(project, services, params, stable_seconds=None, pick=None):
    """Observe until pass or fail. Returns (ok, message, last states)."""
    start = time.time()
    stable = params["stable_seconds"] if stable_seconds is None else stable_seconds
    g = Gate(services, stable, params["timeout"], start)
    baseline = None
    states = {}
    while True:
        states = project.containers(services, pick)
        if baseline is None:
            baseline = dict((s, st["restart_count"]) for s, st in states.items())
        verdicts = dict((s, assess(states.get(s), baseline.get(s, 0))) for s in services)
        outcome, message = g.observe(verdicts, time.time())
        if outcome == "pass":
            return True, message, states
        if outcome == "fail":
            details = []
            for s in services:
                if verdicts[s][0] == FAILED or outcome == "fail" and "timed out" in message:
                    st = states.get(s)
                    if st:
                        part = "--- %s (%s)" % (s, st["name"])
                        if st["health_output"]:
                            part += "\nlast health check: %s" % st["health_output"][-500:]
                        part += "\nlast log lines:\n%s" % project.logs(st["id"])
                        details.append(part)
            return False, message + ("\n" + "\n".join(details) if details else ""), states
        time.sleep(params["poll_interval"])


def summary(states):
    return dict((s, {"status": st["status"], "health": st["health"], "restart_count": st["restart_count"],
                     "container": st["name"]}) for s, st in states.items())


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path", required=True),
            project_name=dict(type="str", required=True),
            fragment=dict(type="str", required=True),
            definition=dict(type="dict"),
            env=dict(type="dict", no_log=True),
            services=dict(type="list", elements="str"),
            stable_seconds=dict(type="int", default=5),
            timeout=dict(type="int", default=180),
            poll_interval=dict(type="float", default=0.5),
            rollback=dict(type="bool", default=True),
            start_first=dict(type="list", elements="str", default=[]),
            recreate=dict(type="list", elements="str", default=[]),
            exclusive_env=dict(type="list", elements="str", default=[]),
            pull=dict(type="str", choices=["missing", "never", "always"], default="missing"),
        ),
        supports_check_mode=True,
    )
    if not HAS_YAML:
        module.fail_json(msg="rpa_compose needs PyYAML on the managed host (apt install python3-yaml)")
    p = module.params
    project = Project(module)
    definition = p["definition"]
    if definition is None:
        stored = read(project.frag_file)
        if stored is None:
            module.fail_json(msg="rpa_compose: no definition given and no stored fragment %s" % project.frag_file)
        definition = yaml.safe_load(stored) or {}
        if p["env"] is None:
            stored_env = read(project.env_frag_file)
            p["env"] = json.loads(stored_env) if stored_env else {}
    if p["env"] is None:
        p["env"] = {}
    fragment_services = sorted((definition.get("services") or {}).keys())
    services = p["services"] or fragment_services
    unknown = sorted((set(services) | set(p["start_first"]) | set(p["recreate"])) - set(fragment_services))
    if unknown:
        module.fail_json(msg="services %s are not defined in fragment %s" % (", ".join(unknown), p["fragment"]))

    try:
        check_fragment_name(p["fragment"])
        files = project.render(definition, p["env"])
    except ComposeError as exc:
        module.fail_json(msg="rpa_compose: %s" % exc)

    old = dict((path, read(path)) for path in files)
    files_changed = sorted(path for path, (text, _) in files.items() if old[path] != text)
    env_changed = changed_env_keys(old[project.env_file], files[project.env_file][0])
    diff = {"before_header": project.frag_file, "after_header": project.frag_file,
            "before": old[project.frag_file] or "",
            "after": files[project.frag_file][0]
            + "".join("# .env: %s changed\n" % key for key in env_changed)}
    result = dict(changed=False, files_changed=files_changed, env_changed=env_changed,
                  recreated=[], rolled_out={}, started=[], services={}, diff=diff)

    # Nothing to write and nothing Compose would do: answered from `docker inspect` and the
    # config hashes cached for these very files, without running Compose at all.
    if not files_changed and not p["recreate"]:
        hashes = cached_hashes(read(project.hash_cache),
                               project_digest(old[project.compose_file], old[project.env_file]))
        if hashes is not None:
            try:
                before = project.containers(services)
                image_ids = project.image_ids() if before else {}
            except CommandFailed as exc:
                module.fail_json(msg="rpa_compose: could not observe the project: %s" % exc.err.strip(),
                                 cmd=" ".join(exc.cmd), rc=exc.rc, stdout=exc.out, stderr=exc.err, **result)
            if settled(services, before, hashes, image_ids):
                result["services"] = summary(before)
                if module.check_mode:
                    result["would_recreate"] = []
                module.exit_json(**result)

    # Validate the candidate project before it can replace anything live.
    workdir = tempfile.mkdtemp(prefix="rpa_compose.")
    try:
        cand_compose = os.path.join(workdir, "docker-compose.yml")
        cand_env = os.path.join(workdir, ".env")
        project.write({cand_compose: files[project.compose_file], cand_env: files[project.env_file]})
        try:
            project.compose(["config", "--quiet"], cand_compose, cand_env)
            _, out, _ = project.compose(["config", "--hash", "*"], cand_compose, cand_env)
        except CommandFailed as exc:
            module.fail_json(msg="rpa_compose: the merged project with fragment %s is not valid Compose; "
                                 "nothing was changed. %s" % (p["fragment"], exc.err.strip()),
                             cmd=" ".join(exc.cmd), rc=exc.rc, stdout=exc.out, stderr=exc.err, **result)
        all_hashes = parse_config_hashes(out)
        candidate_hashes = dict((s, h) for s, h in all_hashes.items() if s in services)
    finally:
        for name in os.listdir(workdir):
            os.unlink(os.path.join(workdir, name))
        os.rmdir(workdir)

    before = project.containers(services)
    if module.check_mode:
        running = dict((s, st["config_hash"]) for s, st in before.items() if st["status"] == "running")
        result["would_recreate"] = sorted(set(would_recreate(running, candidate_hashes)) | set(p["recreate"]))
        result["changed"] = bool(files_changed or result["would_recreate"])
        result["services"] = summary(before)
        module.exit_json(**result)

    # Planned work pages nobody: the monitoring role's silence, lifted again however this ends.
    silence = maintenance_silence(module, project, services)
    result["silenced"] = silence is not None
    try:
        apply_and_gate(module, project, p, files, old, before, services, result, all_hashes, candidate_hashes)
    finally:
        end_silence(module, silence)


def roll_out(module, project, p, plan):
    """Start-first: new containers beside the old ones, gated; then the old ones drained and removed.

    Returns (ok, message, {service: host port of the new container}). On failure the new containers are
    removed and the old ones, never touched, keep serving.
    """
    services = sorted(plan)
    scale = []
    for service in services:
        scale += ["--scale", "%s=2" % service]
    # Not --no-deps: Compose drops depends_on from a service it starts without its dependencies, and the
    # container's config hash would never match the project's again (every later run would recreate it).
    old_ids = set(st["id"] for st in plan.values())

    def newcomers():
        found = {}
        for obj in project.inspect_all():
            state = container_state(obj)
            if state["service"] in plan and state["id"] not in old_ids and not state["oneoff"]:
                found[state["service"]] = (state, host_ports(obj))
        return found

    try:
        project.compose(["up", "--detach", "--no-recreate", "--pull", p["pull"]] + scale + services)
        new = newcomers()
        missing = [s for s in services if s not in new]
        ok, message = not missing, "no new container was started for %s" % ", ".join(missing)
        if ok:
            ok, message, _ = gate(project, services, p, pick=dict((s, new[s][0]["id"]) for s in services))
    except CommandFailed as exc:
        ok, message = False, exc.err.strip()[-2000:]
    if not ok:
        leftovers = [state["id"] for state, _ in newcomers().values()]
        for cid in leftovers:
            rc, _, err = module.run_command(["docker", "rm", "--force", "--volumes", cid])
            if rc != 0:
                module.warn("start-first: could not remove the new container %s: %s" % (cid[:12], err.strip()))
        why = ("start-first: the new container failed its gate and was removed; the old one kept serving, "
               "untouched")
        return False, "%s: %s" % (why, message), {}
    # The new containers were ready for stable_seconds, longer than the proxy's health-check interval:
    # it routes to them already. `docker stop` sends the old ones their stop signal and waits their grace
    # period, so what they are answering is answered.
    for service in services:
        old = plan[service]
        for cmd in (["docker", "stop", old["id"]], ["docker", "rm", "--volumes", old["id"]]):
            rc, out, err = module.run_command(cmd)
            if rc != 0:
                raise CommandFailed(cmd, rc, out, err)
        name = canonical_name(project.name, service)
        rc, _, err = module.run_command(["docker", "rename", new[service][0]["id"], name])
        if rc != 0:
            module.warn("start-first: %s keeps the name %s (rename to %s: %s)"
                        % (service, new[service][0]["name"], name, err.strip()))
    ports = {}
    for service in services:
        published = [port for ports_ in new[service][1].values() for port in ports_]
        ports[service] = published[0] if published else None
    return True, "", ports


def apply_and_gate(module, project, p, files, old, before, services, result, all_hashes, candidate_hashes):
    """Write the files, bring the services up, gate them, roll back on failure; exits the module."""
    project.write(files)
    try:
        # Start-first candidates are left to the rollout (planned below); the rest goes through a plain
        # `up` and its gate first, so that a failing plain service is rolled back before any old
        # container of a start-first one has been stopped.
        candidates = [s for s in p["start_first"] if s in services and publishes_range(files, project, s)]
        forced = [s for s in p["recreate"] if s in services and s not in candidates]
        plain = [s for s in services if s not in candidates]
        first_up = [s for s in plain if s not in forced]
        if first_up:
            project.compose(["up", "--detach", "--remove-orphans", "--pull", p["pull"]] + first_up)
        if forced:
            project.compose(["up", "--detach", "--force-recreate", "--pull", p["pull"]] + forced)
        # Containers that were healthy and that `up` left in place have proven their stability
        # already: one healthy observation is enough (a no-op run does not wait the window out).
        untouched = all(s in before and before[s]["status"] == "running"
                        and before[s]["health"] in ("healthy", None) for s in plain)
        if untouched and plain:
            after = project.containers(plain)
            untouched = all(s in after and after[s]["id"] == before[s]["id"] for s in plain)
        ok, message, states = (gate(project, plain, p, stable_seconds=0 if untouched else None)
                               if plain else (True, "", {}))
        if ok and candidates:
            exclusive = sorted(set(p["exclusive_env"]) & set(result["env_changed"]))
            plan = start_first_plan(services, candidates, [container_state(o) for o in project.inspect_all()],
                                    candidate_hashes, project.image_ids(), p["recreate"])
            if exclusive:
                # Old and new must not serve side by side (a new signing key: the old container refuses
                # the new one's tokens): stop-first, with Caddy holding the requests meanwhile.
                module.warn("%s changed: %s replaced stop-first" % (", ".join(exclusive), ", ".join(sorted(plan))))
                project.compose(["up", "--detach", "--pull", p["pull"]]
                                + (["--force-recreate"] if set(plan) & set(p["recreate"]) else []) + candidates)
            elif plan:
                ok, message, result["rolled_out"] = roll_out(module, project, p, plan)
            if ok and (exclusive or set(candidates) - set(plan)):
                # Not rolled out (unchanged, nothing ran, two containers, or stop-first): a plain `up` of
                # its own, through the gate - at once when it left healthy containers in place.
                rest = [s for s in candidates if exclusive or s not in plan]
                if not exclusive:
                    project.compose(["up", "--detach", "--pull", p["pull"]] + rest)
                now = project.containers(rest)
                kept = not exclusive and all(s in before and s in now and now[s]["id"] == before[s]["id"]
                                             and before[s]["status"] == "running"
                                             and before[s]["health"] in ("healthy", None) for s in rest)
                ok, message, _ = gate(project, rest, p, stable_seconds=0 if kept else None)
        if ok:
            # The whole fragment, once more: every service ready now (each passed its own window already).
            ok, message, states = gate(project, services, p, stable_seconds=0)
    except CommandFailed as exc:
        # Compose prints a progress line per container; the error lines are what matter.
        err = exc.err.strip()
        errors = [line.strip() for line in err.splitlines() if "rror" in line]
        ok, message, states = False, "%s failed: %s" % (" ".join(exc.cmd[:3]), "\n".join(errors[-5:]) or err[-2000:]), {}
    if not ok:
        result["rolled_out"] = {}
        try:
            states = project.containers(services)
        except CommandFailed:
            states = {}

    if ok:
        project.write({project.hash_cache: (render_hash_cache(
            project_digest(files[project.compose_file][0], files[project.env_file][0]), all_hashes), 0o600)})
        after_ids = dict((s, st["id"]) for s, st in states.items())
        result["recreated"] = recreated_services(dict((s, st["id"]) for s, st in before.items()), after_ids)
        result["started"] = sorted(s for s in services if s in before and s not in result["recreated"]
                                   and before[s]["status"] != "running")
        result["changed"] = bool(result["files_changed"] or result["recreated"] or result["started"])
        result["services"] = summary(states)
        module.exit_json(**result)

    result["services"] = summary(states)
    failure = "rpa_compose: fragment %s failed its health gate: %s" % (p["fragment"], message)
    if not p["rollback"] or old[project.frag_file] is None:
        why = "rollback is off" if not p["rollback"] else "there is no previous definition to roll back to"
        module.fail_json(msg="%s\nNot rolled back (%s)." % (failure, why), rolled_back=False, changed=True,
                         **dict((k, v) for k, v in result.items() if k != "changed"))

    # Roll back: the previous files, and each image reference re-pointed at the image it ran before.
    project.write(dict((path, (old[path], files[path][1])) for path in files))
    for st in before.values():
        if st["image_ref"] and st["image_id"] and project.image_id(st["image_ref"]) != st["image_id"]:
            module.run_command(["docker", "tag", st["image_id"], st["image_ref"]])
    try:
        project.compose(["up", "--detach", "--pull", "never"] + services)
        back_ok, back_message, back_states = gate(project, services, p)
    except CommandFailed as exc:
        back_ok, back_message, back_states = False, exc.err.strip()[-2000:], {}
    result["services"] = summary(back_states)
    if back_ok:
        module.fail_json(msg="%s\nRolled back to the previous definition; it is healthy again." % failure,
                         rolled_back=True, **result)
    module.fail_json(msg="%s\nRollback was attempted and ALSO failed: %s" % (failure, back_message),
                     rolled_back=False, **result)


if __name__ == "__main__":
    main()
