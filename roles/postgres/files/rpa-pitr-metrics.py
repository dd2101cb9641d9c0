#!/usr/bin/python3
"""Point-in-time recovery metrics for node-exporter's textfile collector (run by rpa-pitr-metrics.timer).

    rpa-pitr-metrics.py --container NAME [--stanza rpa] [--textfile-dir DIR]
    rpa-pitr-metrics.py --run-as postgres --only-if-primary URL [--stanza rpa] [--textfile-dir DIR]

Asks pgBackRest in the Postgres container (or on this host as the --run-as user: a Patroni member's
PostgreSQL, by its socket) what the repository holds (`info --output=json`) and Postgres how far its
WAL is archived (pg_stat_archiver), and writes DIR/rpa_pitr.prom atomically. With --only-if-primary
(Patroni's REST API /primary), a member that is not the leader removes its file instead and asks
nothing: only the leader archives, and the node exporter would serve a former leader's file for ever.
Each half is written without the other: an unreachable repository still leaves the WAL metrics, a
stopped Postgres the repository's. Problems go to stderr (the journal), never a secret: pgBackRest's
messages are cut to their first printable line. Exits 0 unless the metrics file cannot be written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_TEXTFILE_DIR = "/var/lib/node_exporter/textfile_collector"
METRICS_FILE = "rpa_pitr.prom"
# pgBackRest gives up on an unreachable SFTP host after its io-timeout (60 s) of retries and then
# answers with status 99; waiting longer than that keeps its verdict instead of a bare timeout.
PGBACKREST_TIMEOUT = 120
PSQL_TIMEOUT = 30
# One line, '|'-separated; tests/unit/fixtures/psql_pitr_archiver_pg17.tsv holds its real output.
# now() comes from the clock that stamped last_archived_time. The .ready files are the archiver's
# queue: none left means every finished segment is archived, whatever name it archived last.
ARCHIVER_SQL = (
    "SELECT last_archived_wal, extract(epoch FROM last_archived_time), failed_count, "
    "extract(epoch FROM last_failed_time), pg_current_wal_lsn(), current_setting('wal_segment_size'), "
    "current_setting('wal_block_size'), extract(epoch FROM pg_postmaster_start_time()), "
    "(SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'), "
    "extract(epoch FROM now()) FROM pg_stat_archiver"
)
# pgBackRest's stanza status codes that mean "the repository answered and the stanza is there":
# 0 ok, 2 no valid backups (reported as a count of 0, its own alert, not as an unreachable repo).
REPO_UP_CODES = {0, 2}
SEGMENT = re.compile(r"^(?P<tli>[0-9A-F]{8})(?P<log>[0-9A-F]{8})(?P<seg>[0-9A-F]{8})"
                     r"(?P<kind>|\.partial|\.[0-9A-F]{8}\.backup)$")
HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")
SIZE = re.compile(r"^(?P<n>\d+)\s*(?P<unit>B|kB|MB|GB|TB)?$")
UNITS = {None: 1, "B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}

HELP = {
    "rpa_pitr_repo_up": ("gauge", "1 if pgBackRest read the repository and the stanza exists (status ok or "
                                  "no valid backups)."),
    "rpa_pitr_base_backups": ("gauge", "Base backups (full, differential, incremental) in the repository."),
    "rpa_pitr_base_backup_last_timestamp_seconds": ("gauge", "When the newest base backup finished."),
    "rpa_pitr_recovery_window_start_timestamp_seconds": ("gauge", "When the oldest base backup finished: the "
                                                                  "earliest time a restore can reach."),
    "rpa_pitr_wal_archived_last_timestamp_seconds": ("gauge", "When Postgres last archived a WAL file."),
    "rpa_pitr_wal_archive_failed_total": ("counter", "Failed archive_command runs since the statistics reset."),
    "rpa_pitr_wal_unarchived_seconds": ("gauge", "How long WAL has waited for the archive; 0 when all is archived."),
    "rpa_pitr_wal_archive_complete_timestamp_seconds": ("gauge", "When this check last found all WAL archived."),
    "rpa_pitr_metrics_success": ("gauge", "1 if both pgBackRest and Postgres answered this run."),
    "rpa_pitr_metrics_last_run_timestamp_seconds": ("gauge", "When the PITR metrics were last written."),
}


# ------------------------------------------------------------- pure logic
def decode(raw: bytes) -> str:
    # A wrong passphrase makes pgBackRest echo the undecryptable file: not UTF-8.
    return raw.decode("utf-8", errors="replace")


def first_line(text: str, limit: int = 200) -> str:
    line = next((s for s in str(text).splitlines() if s.strip()), "")
    return "".join(c if c.isprintable() else "?" for c in line)[:limit]


def parse_info(json_text: str, stanza: str = "rpa") -> tuple[dict[str, float], str]:
    """Repository metrics from `pgbackrest info --output=json`, and the stanza's status for the journal.

    Backup metrics only when the repository answered: a repository that cannot be read says nothing
    about its backups. Backups pgBackRest flags with errors (page checksums) do not count, as in the
    rpa_pitr_state filter.
    """
    try:
        # strict=False: the wrong-passphrase message carries raw control characters.
        stanzas = json.loads(json_text, strict=False)
    except ValueError:
        return {"repo_up": 0}, f"no JSON from pgbackrest info: {first_line(json_text)}"
    if not isinstance(stanzas, list):
        stanzas = []
    found = [s for s in stanzas if isinstance(s, dict) and s.get("name") == stanza]
    if not found:
        return {"repo_up": 0}, f"stanza {stanza} not in pgbackrest info"
    info = found[0]
    status = info.get("status") or {}
    code = status.get("code")
    repo_message = ((info.get("repo") or [{}])[0].get("status") or {}).get("message")
    message = f"status {code}: {first_line(repo_message or status.get('message') or '')}"
    if code not in REPO_UP_CODES:
        return {"repo_up": 0}, message
    stops = sorted(int(b["timestamp"]["stop"]) for b in info.get("backup") or [] if not b.get("error"))
    out = {"repo_up": 1, "base_backups": len(stops)}
    if stops:
        out["base_backup_last_timestamp_seconds"] = stops[-1]
        out["recovery_window_start_timestamp_seconds"] = stops[0]
    return out, message


def lsn(text: str) -> int:
    """'16/B374D848' -> byte position."""
    high, sep, low = text.strip().partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) + int(low, 16)


def size_bytes(text: str) -> int:
    """current_setting() of a size: '16MB', '8192'."""
    match = SIZE.match(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(match["n"]) * UNITS[match["unit"]]


def wal_segment_end(name: str, segment_size: int) -> int | None:
    """The LSN up to which the archived file `name` proves the WAL archived; None if it proves nothing.

    A segment: its end. A backup history file (SEGMENT.OFFSET.backup) names its backup's start
    segment, archived before it: that segment's end is a safe lower bound (the stop segment, archived
    just before or after it, may lie further on). A .partial (the old timeline's last segment at a
    promotion) holds an unknown part of its segment: its start. A timeline .history file has no WAL
    position.
    """
    match = SEGMENT.match(name or "")
    if not match:
        if HISTORY.match(name or ""):
            return None
        raise ValueError(f"not a WAL file name: {name!r}")
    seg = int(match["seg"], 16) + (0 if match["kind"] == ".partial" else 1)
    return (int(match["log"], 16) << 32) + seg * segment_size


def _epoch(text: str) -> float | None:
    return float(text) if text.strip() else None


def parse_archiver(line: str) -> dict:
    """One line of ARCHIVER_SQL's `psql -At -F '|'` output (NULL is an empty field)."""
    fields = line.strip().split("|")
    if len(fields) != 10:
        raise ValueError(f"expected 10 fields from the archiver query, got {len(fields)}: {line.strip()[:200]!r}")
    wal, archived, failed, failed_at, current, seg_size, block_size, started, ready, now = fields
    return {
        "last_archived_wal": wal or None,
        "last_archived_time": _epoch(archived),
        "failed_count": int(failed),
        "last_failed_time": _epoch(failed_at),
        "current_lsn": lsn(current),
        "segment_size": size_bytes(seg_size),
        "block_size": size_bytes(block_size),
        "postmaster_start": float(started),
        "ready": int(ready),
        "now": float(now),
    }


def archive_complete(a: dict) -> bool:
    """Whether the archive holds all WAL that matters (a parse_archiver dict).

    An idle database is never exactly at a segment's end: right after each switch the background
    writer logs a running-transactions record (a long page header and the record: 96 bytes in our
    captures), which archive_timeout deliberately never switches out on its own. So WAL within one
    WAL page past the archived end counts as archived; real writes go beyond it, or are switched out
    by archive_timeout within seconds anyway when archiving works.
    """
    current = a["current_lsn"]
    end = wal_segment_end(a["last_archived_wal"], a["segment_size"]) if a["last_archived_wal"] else None
    if a["ready"] == 0:
        # Nothing queued: every finished segment is archived, whatever file was archived last (a
        # backup's .backup file often comes after its stop segment; a .history file names no segment).
        end = max(end or 0, current - current % a["segment_size"])
    return end is not None and current - end <= a["block_size"]


def wal_metrics(a: dict, previous: dict[str, float]) -> dict[str, float]:
    """WAL metrics from a parse_archiver dict and this file's previous values (parse_metrics).

    The age counts from the later of the last archiving and the last run that found the archive
    complete: after a quiet hour the first write has waited seconds, not an hour.
    """
    out = {"wal_archive_failed_total": a["failed_count"]}
    if a["last_archived_time"] is not None:
        out["wal_archived_last_timestamp_seconds"] = a["last_archived_time"]
    if archive_complete(a):
        out["wal_unarchived_seconds"] = 0
        out["wal_archive_complete_timestamp_seconds"] = a["now"]
        return out
    complete = previous.get("wal_archive_complete_timestamp_seconds")
    since = a["last_archived_time"] if a["last_archived_time"] is not None else a["postmaster_start"]
    if complete is not None:
        since = max(since, complete)
        out["wal_archive_complete_timestamp_seconds"] = complete
    out["wal_unarchived_seconds"] = max(0.0, a["now"] - since)
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """render()'s output back to short names (the previous run's values)."""
    out = {}
    for line in text.splitlines():
        match = re.match(r"^rpa_pitr_(\w+)(?:\{[^}]*\})? (\S+)$", line)
        if match:
            try:
                out[match[1]] = float(match[2])
            except ValueError:
                continue
    return out


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def render(metrics: dict[str, float], stanza: str = "rpa") -> str:
    """Prometheus text format: names without the rpa_pitr_ prefix in, HELP/TYPE and the stanza label out."""
    lines = []
    for name, (kind, help_text) in HELP.items():
        short = name.removeprefix("rpa_pitr_")
        if short not in metrics:
            continue
        value = float(metrics[short])
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
                  f'{name}{{stanza="{_label(stanza)}"}} ' + (f"{int(value)}" if value.is_integer() else f"{value:.3f}")]
    unknown = set(metrics) - {n.removeprefix("rpa_pitr_") for n in HELP}
    if unknown:
        raise ValueError(f"metrics without HELP: {sorted(unknown)}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ effects
def complain(msg: str) -> None:
    print(f"rpa-pitr-metrics: {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            # node-exporter reads it as its own user; nothing in it is secret.
            os.fchmod(handle.fileno(), 0o644)
            handle.write(text.encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def where(container: str | None, run_as: str | None) -> list[str]:
    """The argv prefix that runs pgbackrest and psql: in the Postgres container, or here as run_as (root
    changes user with runuser; Patroni's pg_hba lets the postgres user in by its socket, peer)."""
    return ["docker", "exec", container] if container else ["runuser", "-u", run_as, "--"]


def collect(container: str | None, stanza: str, previous: dict[str, float],
            run_as: str | None = None) -> tuple[dict[str, float], bool]:
    metrics: dict[str, float] = {}
    ok = True
    prefix = where(container, run_as)
    try:
        proc = run(prefix + ["pgbackrest", f"--stanza={stanza}", "info", "--output=json"], PGBACKREST_TIMEOUT)
        repo, status = parse_info(decode(proc.stdout), stanza)
        metrics.update(repo)
        if proc.returncode != 0:
            ok = False
            complain(f"pgbackrest info exited {proc.returncode}: "
                     f"{first_line(decode(proc.stdout)) or first_line(decode(proc.stderr))}")
        elif not repo["repo_up"]:
            complain(f"the repository of stanza {stanza} cannot be read: {status}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        metrics["repo_up"], ok = 0, False
        complain(f"pgbackrest info did not answer: {exc}")
    try:
        proc = run(prefix + ["psql", "-X", "-U", "postgres", "-d", "postgres", "-At", "-F", "|",
                             "-v", "ON_ERROR_STOP=1", "-c", ARCHIVER_SQL], PSQL_TIMEOUT)
        if proc.returncode != 0:
            raise ValueError(f"psql exited {proc.returncode}: {first_line(decode(proc.stderr))}")
        metrics.update(wal_metrics(parse_archiver(decode(proc.stdout)), previous))
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        ok = False
        complain(f"the WAL archiver's state is unknown: {exc}")
        # Still true, and the next run's bound on the unarchived WAL's age.
        if "wal_archive_complete_timestamp_seconds" in previous:
            metrics["wal_archive_complete_timestamp_seconds"] = previous["wal_archive_complete_timestamp_seconds"]
    return metrics, ok


def is_primary(url: str) -> bool:
    """Whether Patroni's REST API answers url (/primary) with 200: 503 on a replica, nothing when it is down."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rpa-pitr-metrics", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--container", help="the Postgres container (pgBackRest runs in it)")
    source.add_argument("--run-as", help="run pgBackRest and psql on this host as this user (a Patroni member)")
    parser.add_argument("--only-if-primary", metavar="URL",
                        help="Patroni's /primary: on a member that is not the leader, remove the file and stop")
    parser.add_argument("--stanza", default="rpa")
    parser.add_argument("--textfile-dir", default=DEFAULT_TEXTFILE_DIR)
    args = parser.parse_args(argv)
    target = Path(args.textfile_dir) / METRICS_FILE
    if args.only_if_primary and not is_primary(args.only_if_primary):
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            complain(f"cannot remove {target}: {exc}")
            return 1
        return 0
    try:
        previous = parse_metrics(target.read_text())
    except (OSError, UnicodeDecodeError):
        previous = {}
    metrics, ok = collect(args.container, args.stanza, previous, args.run_as)
    metrics["metrics_success"] = int(ok)
    metrics["metrics_last_run_timestamp_seconds"] = time.time()
    try:
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_atomic(target, render(metrics, args.stanza))
    except OSError as exc:
        complain(f"cannot write {target}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
