"""Point-in-time recovery with pgBackRest: what the repository holds, and where a restore may go.

``rpa_pitr_state`` reads ``pgbackrest info --output=json`` against the running cluster: whether the
stanza exists, how many base backups it holds, the span a restore can reach, and a problem that must
stop the run (a repository that cannot be read, or one that holds another cluster's archive: this
cluster must never write into it). ``rpa_pitr_target`` turns ``restore_target_time`` (ISO-8601 UTC,
or ``latest``) into pgBackRest's restore options, refusing a time outside what the repository holds.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from ansible.errors import AnsibleFilterError

# pgBackRest's info status codes (doc: "info" command): the stanza is usable, or can be created.
USABLE = {0: "ok", 2: "no valid backups"}
MISSING = {1: "missing stanza path", 3: "missing stanza data"}
ISO_UTC = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|\+00:00)$")


def rpa_pitr_state(info, system_id, repo_path: str, prefix: str = "postgres_pitr") -> dict:
    """``{stanza, backups, oldest, newest, problem}`` of the stanza in info (a list of one stanza, or the
    command's output: a wrong passphrase puts raw control bytes in a message, which strict JSON refuses).
    prefix: the variables the messages name (postgres_pitr for the single host, patroni_pitr for a cluster)."""
    if isinstance(info, str):
        try:
            info = json.loads(info, strict=False)
        except ValueError:
            return {"stanza": False, "backups": 0, "oldest": None, "newest": None,
                    "problem": f"pgbackrest info gave no JSON for {repo_path}: {info[:200]!r}"}
    stanza = (info or [{}])[0] if isinstance(info, list) else {}
    status = stanza.get("status") or {}
    code = status.get("code")
    repo = (stanza.get("repo") or [{}])[0]
    message = (repo.get("status") or {}).get("message") or status.get("message") or "no answer"
    backups = [b for b in stanza.get("backup") or [] if not b.get("error")]
    stops = sorted(int(b["timestamp"]["stop"]) for b in backups)
    out = {"stanza": code in USABLE, "backups": len(backups), "oldest": stops[0] if stops else None,
           "newest": stops[-1] if stops else None, "problem": ""}
    if code not in USABLE and code not in MISSING:
        # The message can hold bytes of an undecryptable file (a wrong passphrase): its first line only.
        first = str(message).splitlines()[0][:300] if message else "no answer"
        out["problem"] = (f"the off-site repository {repo_path} cannot be read ({first}). Check "
                          f"{prefix}_repo_host/_port/_user, {prefix}_repo_host_key and the SFTP key pair, "
                          f"and that {prefix}_cipher_pass is the repository's passphrase.")
        return out
    dbs = stanza.get("db") or []
    if out["stanza"] and dbs and system_id not in (None, ""):
        theirs = str(max(dbs, key=lambda db: db.get("id", 0)).get("system-id"))
        if theirs != str(system_id):
            out["problem"] = (f"the off-site repository {repo_path} holds the archive of another cluster (system "
                              f"identifier {theirs}; this server's is {system_id}), which this one must not write "
                              "into. A new server that takes over that data is built with playbooks/recover.yml; "
                              f"otherwise give this server its own {prefix}_repo_path.")
    return out


def _parse_utc(text: str) -> datetime:
    match = ISO_UTC.match(str(text).strip())
    if not match:
        raise AnsibleFilterError(f"restore_target_time={text!r} must be ISO-8601 in UTC, e.g. 2026-11-26T10:15:00Z, "
                                 "or latest.")
    try:
        return datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}+00:00")
    except ValueError as exc:
        raise AnsibleFilterError(f"restore_target_time={text!r} is not a valid date and time ({exc}).") from None


def rpa_pitr_target(target, state: dict, now: float, prefix: str = "postgres_pitr") -> dict:
    """pgBackRest restore options for target: ``latest`` (the end of the archive) or a UTC time that the
    repository's base backups and WAL can reach: after the oldest backup finished, not in the future.
    prefix: the variables the messages name (postgres_pitr for the single host, patroni_pitr for a cluster)."""
    if not state or not state.get("backups"):
        raise AnsibleFilterError("the off-site repository holds no base backup yet: there is nothing to restore "
                                 "to a point in time.")
    if str(target).strip().lower() == "latest":
        return {"options": ["--type=default"], "epoch": None, "label": "latest"}
    when = _parse_utc(target)
    epoch = when.timestamp()
    if epoch > float(now):
        raise AnsibleFilterError(f"restore_target_time={target} is in the future (now "
                                 f"{datetime.fromtimestamp(float(now), timezone.utc):%Y-%m-%dT%H:%M:%SZ}).")
    if epoch < state["oldest"]:
        raise AnsibleFilterError(
            f"restore_target_time={target} is outside the recovery window: the oldest base backup finished at "
            f"{datetime.fromtimestamp(state['oldest'], timezone.utc):%Y-%m-%dT%H:%M:%SZ} ({prefix}_window_days "
            "sets how far back the window reaches).")
    return {"options": ["--type=time", f"--target={when:%Y-%m-%d %H:%M:%S}+00", "--target-action=promote"],
            "epoch": epoch, "label": f"{when:%Y-%m-%dT%H:%M:%SZ}"}


class FilterModule:
    def filters(self):
        return {"rpa_pitr_state": rpa_pitr_state, "rpa_pitr_target": rpa_pitr_target}
