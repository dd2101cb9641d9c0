# -*- coding: utf-8 -*-
"""Pure logic of the Swarm health gate (issue 21): no Docker, no Ansible, unit-tested.

What the gate reads, and why not the CLI's exit code
----------------------------------------------------
``docker service update --detach=false`` to an image whose health check fails
exits 0 once Swarm has rolled the service back: the command waits for the
service to *converge*, and the rolled-back service has converged.  Only the
service's ``UpdateStatus.State`` tells the truth:

  updating            the update is under way
  completed           every task runs the new spec
  paused              update_config.failure_action=pause stopped it
  rollback_started    failure_action=rollback is undoing it
  rollback_paused     the rollback itself failed
  rollback_completed  the service runs the PREVIOUS spec again

So the gate records when it deployed, then polls ``docker service inspect``
and ``docker service ps``: an UpdateStatus that started before the deploy
belongs to an earlier update and says nothing about this one.
"""

from __future__ import annotations

import json
import re
import shlex

FAILED_STATES = {
    "paused": "the update was paused (update_config.failure_action=pause)",
    "rollback_started": "the update failed and Swarm is rolling it back",
    "rollback_paused": "the update failed and its rollback was paused",
    "rollback_completed": "the update failed and Swarm rolled it back to the previous spec",
}
_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


class SwarmError(Exception):
    """Output the gate cannot read; the message says what it got."""


def parse_time(text):
    """Seconds since the epoch of an engine timestamp (RFC 3339, nanoseconds, any offset); None for
    the zero time or an empty value. Not datetime.fromisoformat: Python 3.9's cannot read nanoseconds."""
    if not text or text.startswith("0001-01-01"):
        return None
    m = _TIME.match(text)
    if not m:
        raise SwarmError("unreadable engine timestamp %r" % (text,))
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = float("0." + m.group(7)) if m.group(7) else 0.0
    # Days from the civil date (proleptic Gregorian), so no timezone database is needed.
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    seconds = days * 86400 + hour * 3600 + minute * 60 + second + fraction
    offset = m.group(8)
    if offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    return seconds


def update_status(inspect):
    """(state, message, started_at) of a service's last update; (None, '', None) before its first."""
    status = inspect.get("UpdateStatus") or {}
    return status.get("State") or None, status.get("Message") or "", parse_time(status.get("StartedAt"))


def desired_replicas(inspect):
    """How many tasks the service wants: Replicated's count, or None for a global service."""
    mode = inspect.get("Spec", {}).get("Mode", {})
    if "Replicated" in mode:
        return int(mode["Replicated"].get("Replicas", 1))
    return None


def _container_spec(spec):
    # A task's copy of the spec leaves StopGracePeriod out, and an empty DNSConfig of a service that
    # `docker stack deploy` created (both seen on 26.1): compare the rest, empty values as absent.
    return {k: v for k, v in ((spec or {}).get("ContainerSpec") or {}).items()
            if k != "StopGracePeriod" and v not in ({}, [], None, "")}


def runs_current_spec(inspect, task):
    return _container_spec(task.get("Spec")) == _container_spec(inspect.get("Spec", {}).get("TaskTemplate"))


def running_tasks(inspect, tasks):
    """Tasks of this service that run its current container spec and are meant to.

    The whole container spec, not the image: an update may change only an environment variable or the
    health check (the captured rollback does), and then the old tasks run the same image."""
    return [t for t in tasks
            if t.get("ServiceID") == inspect.get("ID")
            and t.get("DesiredState") == "running"
            and (t.get("Status") or {}).get("State") == "running"
            and runs_current_spec(inspect, t)]


_TASK_IN_MESSAGE = re.compile(r"\btask ([a-z0-9]{25})\b")


def culprit_task(inspect, tasks):
    """The task that failed the update: the one Swarm's message names (rollback_started, paused), else the
    newest stopped task of another spec than the current one (after rollback_completed the message is only
    "rollback completed", and the current spec is the restored one). A task stopped for failing its health
    check ends "complete" (SIGTERM, exit 0), not "failed": its state says nothing, its spec does."""
    _, message, _ = update_status(inspect)
    m = _TASK_IN_MESSAGE.search(message)
    if m:
        for task in tasks:
            if task.get("ID") == m.group(1):
                return task
    stopped = [t for t in tasks if t.get("DesiredState") != "running" and not runs_current_spec(inspect, t)]
    # A task that ended by itself (failed, rejected, complete) before one the rollback shut down; the
    # newest first within each.
    rank = {"failed": 0, "rejected": 0, "complete": 1}
    stopped.sort(key=lambda t: (rank.get((t.get("Status") or {}).get("State"), 2),
                                -(parse_time((t.get("Status") or {}).get("Timestamp")) or 0)))
    return stopped[0] if stopped else None


def assess(inspect, tasks, deployed_at):
    """('converged' | 'pending' | 'failed', reason) of one service after a deploy at deployed_at.

    converged: no update since the deploy left it short (UpdateStatus absent, older, or completed)
               and as many tasks run its current spec as it wants;
    failed:    an update since the deploy was paused or rolled back;
    pending:   anything else (the update has not started, or runs).
    """
    state, message, started = update_status(inspect)
    name = inspect.get("Spec", {}).get("Name", inspect.get("ID", "?"))
    current = started is not None and deployed_at is not None and started >= deployed_at
    if current and state in FAILED_STATES:
        return "failed", "%s: %s (%s)" % (name, FAILED_STATES[state], message or state)
    if current and state != "completed":
        return "pending", "%s: update %s" % (name, state)
    want = desired_replicas(inspect)
    have = len(running_tasks(inspect, tasks))
    if want is not None and have < want:
        return "pending", "%s: %d of %d tasks run its current spec" % (name, have, want)
    if want is None and have == 0:
        return "pending", "%s: no task runs its current spec" % name
    return "converged", "%s: %d task(s) run its current spec" % (name, have)


def failure_report(inspect, tasks, logs, lines=20):
    """What an operator needs from a failed update: the service, the state, Swarm's message, the task that
    failed it (its state, error and health check) and its last log lines (the service's, when none is
    that task's)."""
    state, message, _ = update_status(inspect)
    name = inspect.get("Spec", {}).get("Name", inspect.get("ID", "?"))
    parts = ["service %s: %s" % (name, FAILED_STATES.get(state, state or "no update status"))]
    if message:
        parts.append("swarm says: %s" % message)
    all_lines = [line for line in (logs or "").splitlines() if line.strip()]
    tail = all_lines[-lines:]
    culprit = culprit_task(inspect, tasks)
    if culprit is not None:
        status = culprit.get("Status") or {}
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
        health = (((culprit.get("Spec") or {}).get("ContainerSpec") or {}).get("Healthcheck") or {}).get("Test")
        detail = [
            "state %s (%s)" % (status.get("State"), status.get("Message") or ""),
            "error: %s" % status["Err"] if status.get("Err") else "",
            "exit %s" % exit_code if exit_code else "",
            "health check: %s" % " ".join(health) if health else "",
        ]
        parts.append("task %s failed it: %s" % (culprit.get("ID", "?")[:12], ", ".join(d for d in detail if d)))
        # `docker service logs` prefixes each line with SERVICE.SLOT.TASKID@NODE.
        own = [line for line in all_lines if ".%s@" % culprit.get("ID") in line.split("|", 1)[0]]
        tail = own[-lines:] or tail
    if tail:
        parts.append("last log lines:\n" + "\n".join(tail))
    return "\n".join(parts)


def stuck_report(inspect, tasks, logs, reason, lines=20):
    """What an operator needs from a service that did not converge in time without an update to blame (a first
    deploy, or tasks that keep failing under a restart policy that never gives up): the reason, how many of
    its tasks ended on their own, the newest of them (its state, error and exit code) and that task's last
    log lines (the service's, when none is that task's)."""
    parts = [reason]
    ended = [t for t in tasks if (t.get("Status") or {}).get("State") in ("failed", "rejected", "complete")]
    ended.sort(key=lambda t: -(parse_time((t.get("Status") or {}).get("Timestamp")) or 0))
    all_lines = [line for line in (logs or "").splitlines() if line.strip()]
    tail = all_lines[-lines:]
    if ended:
        newest = ended[0]
        status = newest.get("Status") or {}
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
        detail = [
            "state %s (%s)" % (status.get("State"), status.get("Message") or ""),
            "error: %s" % status["Err"] if status.get("Err") else "",
            "exit %s" % exit_code if exit_code else "",
        ]
        parts.append("%d task(s) ended on their own; the newest, %s: %s"
                     % (len(ended), newest.get("ID", "?")[:12], ", ".join(d for d in detail if d)))
        own = [line for line in all_lines if ".%s@" % newest.get("ID") in line.split("|", 1)[0]]
        tail = own[-lines:] or tail
    if tail:
        parts.append("last log lines:\n" + "\n".join(tail))
    return "\n".join(parts)


def stack_verdict(verdicts):
    """('converged' | 'pending' | 'failed', [reasons]) of a stack from ``{service: (verdict, reason)}``:
    one failed service fails the stack at once (no waiting out the others), naming every failed one."""
    failed = [reason for _, (verdict, reason) in sorted(verdicts.items()) if verdict == "failed"]
    if failed:
        return "failed", failed
    pending = [reason for _, (verdict, reason) in sorted(verdicts.items()) if verdict == "pending"]
    return ("pending", pending) if pending else ("converged", [])


def _without_empty(value):
    """The value with its empty members ({}, [], None) left out, at every depth."""
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def spec_fingerprints(inspects):
    """``{service name: its Spec as canonical JSON}``. The spec itself, not Version.Index: the index moves
    on every write to the service, and `docker stack deploy` writes every service of the stack each time.
    Empty members do not count: the CLI creates a service without ``DNSConfig`` and writes ``DNSConfig: {}``
    on its next deploy of the same file (docker.io 26.1), which changes nothing that runs."""
    return {i.get("Spec", {}).get("Name", i.get("ID")): json.dumps(_without_empty(i.get("Spec", {})), sort_keys=True)
            for i in inspects}


def changed_services(before, after):
    """Services created or whose spec changed between two spec_fingerprints()."""
    return sorted(name for name, index in after.items() if before.get(name) != index)


def _as_list(value, shell_form):
    if value is None:
        return None
    if isinstance(value, str):
        return ["CMD-SHELL", value] if shell_form else shlex.split(value)
    return [str(v) for v in value]


def _env_list(value):
    if value is None:
        return []
    if isinstance(value, dict):
        return sorted("%s=%s" % (k, "" if v is None else v) for k, v in value.items())
    return sorted(str(v) for v in value)


def _duration_ns(value):
    """A Compose duration ("1s", "1m30s", "500ms") in nanoseconds, as the service spec keeps it."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value * 1e9)
    total, units = 0.0, {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)", value):
        total += float(number) * units[unit]
    return int(round(total * 1e9))


def planned_changes(stack, compose_services, inspects, prune=False):
    """What `docker stack deploy` of compose_services (the Compose file's ``services``) would change, for
    check mode: ``{service: [(field, before, after), ...]}``, unchanged ones left out; a service to create is
    ``[("service", None, "created")]``, one to remove ``[("service", "running", None)]``.

    It compares what an operator changes from one deploy to the next - the image as written (the stack's
    ``com.docker.stack.image`` label: the spec itself may carry the digest the CLI resolved), command,
    entrypoint, environment, the health check's test and timings, and the replica count - not every
    field the CLI would set, so a change elsewhere shows only when it is deployed.
    """
    current = {i.get("Spec", {}).get("Name"): i.get("Spec", {}) for i in inspects}
    plan = {}
    for short, svc in sorted((compose_services or {}).items()):
        name = "%s_%s" % (stack, short)
        spec = current.get(name)
        if spec is None:
            plan[name] = [("service", None, "created")]
            continue
        container = spec.get("TaskTemplate", {}).get("ContainerSpec", {})
        health = container.get("Healthcheck") or {}
        want_health = svc.get("healthcheck") or {}
        replicated = spec.get("Mode", {}).get("Replicated")
        fields = [
            ("image", (spec.get("Labels") or {}).get("com.docker.stack.image"), svc.get("image")),
            ("command", container.get("Args"), _as_list(svc.get("command"), False)),
            ("entrypoint", container.get("Command"), _as_list(svc.get("entrypoint"), False)),
            ("environment", sorted(container.get("Env") or []), _env_list(svc.get("environment"))),
            ("healthcheck.test", health.get("Test"), _as_list(want_health.get("test"), True)),
            ("healthcheck.interval", health.get("Interval"), _duration_ns(want_health.get("interval"))),
            ("healthcheck.timeout", health.get("Timeout"), _duration_ns(want_health.get("timeout"))),
            ("healthcheck.retries", health.get("Retries"), want_health.get("retries")),
            ("replicas", (replicated or {}).get("Replicas"),
             (svc.get("deploy") or {}).get("replicas", 1) if replicated is not None else None),
        ]
        changes = [(field, old, new) for field, old, new in fields
                   if old != new and not (old is None and new in (None, []))]
        if changes:
            plan[name] = changes
    if prune:
        wanted = {"%s_%s" % (stack, short) for short in (compose_services or {})}
        for name in sorted(set(current) - wanted):
            plan[name] = [("service", "running", None)]
    return plan


def render_plan(plan):
    """(before, after, summary) texts of planned_changes() for Ansible's --diff and the module's result."""
    before, after, summary = [], [], {}
    for name, changes in sorted(plan.items()):
        for field, old, new in changes:
            if old is not None:
                before.append("%s %s: %s\n" % (name, field, json.dumps(old)))
            if new is not None:
                after.append("%s %s: %s\n" % (name, field, json.dumps(new)))
            summary.setdefault(name, []).append("%s: %s -> %s" % (field, json.dumps(old), json.dumps(new)))
    return "".join(before), "".join(after), summary


def stack_config_unsupported(rc, err):
    """True when `docker stack config` failed because this CLI has no such command (an old CLI takes `config`
    for an unknown word and then refuses the flag: exit 125, "unknown flag: --compose-file", captured from
    docker 26.1's CLI with an unknown subcommand). Any other failure is the file's fault - bad YAML, a bad
    value - and must be reported, not read around."""
    return rc == 125 and "unknown flag: --compose-file" in (err or "")


_VANISHED = re.compile(r"^Error: No such object: \S+$")


def only_vanished(rc, err):
    """True when `docker inspect` of several tasks failed only because some are gone: Swarm prunes a service's
    task history while the gate reads it (seen: a task removed between `docker stack ps` and `docker inspect`).
    docker then still prints the others on stdout, exits 1 and names each missing one on stderr (captured from
    docker 26.1's CLI). Any other failure is reported."""
    lines = [line for line in (err or "").splitlines() if line.strip()]
    return rc == 1 and bool(lines) and all(_VANISHED.match(line.strip()) for line in lines)
