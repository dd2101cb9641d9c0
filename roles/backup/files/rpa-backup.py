#!/usr/bin/env python3
"""Back up, verify, prune and drill the RPA Engine database (run by systemd).

    rpa-backup backup           dump, verify, keep, prune, metrics (rpa-backup.service)
    rpa-backup verify FILE      checksum + full read of one dump
    rpa-backup drill            restore the newest dump into a scratch database and
                                compare per-table row counts (rpa-backup-drill.service)
    rpa-backup restore FILE|newest --yes
                                replace the live database with a dump (playbooks/restore.yml)
    rpa-backup list             the dumps, newest first

Settings come from a JSON file (default /etc/rpa-engine/backup.json, written
by the backup role). Everything goes to stdout/stderr, i.e. the journal; a
failure exits non-zero and sets the metrics, and never touches older dumps.

A dump is written as a hidden temporary file, fsynced, checked (sha256 and a
full `pg_restore -f /dev/null` read - `pg_restore --list` only reads the table
of contents and misses a truncated or corrupted body), and only then renamed
into place beside its `.sha256` and `.counts.json`. The row counts are taken
in the same snapshot pg_dump used, so the drill compares like with like even
while the application writes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CONFIG = "/etc/rpa-engine/backup.json"
DUMP_RE = re.compile(r"^(?P<db>[a-z_][a-z0-9_]*)-(?P<stamp>\d{8}T\d{6}Z)\.dump$")
DRILL_DB = "rpa_backup_drill"
# Exact row counts of every user table, as "schema.table|count" lines.
COUNTS_SQL = r"""
SELECT format('%s.%s|%s', n.nspname, c.relname,
       (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
                                            false, true, '')))[1]::text)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1;
"""


class BackupError(Exception):
    """A failure the operator must see; the message says what and where."""


# ------------------------------------------------------------- pure logic
def parse_counts(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line:
            table, _, count = line.rpartition("|")
            out[table] = int(count)
    return out


def compare_counts(expected: dict[str, int], restored: dict[str, int]) -> list[str]:
    """Human-readable differences; empty when the restore holds exactly the dumped rows."""
    problems = []
    for table in sorted(set(expected) | set(restored)):
        if table not in restored:
            problems.append(f"{table}: missing from the restored database")
        elif table not in expected:
            problems.append(f"{table}: in the restore but not in the dump's snapshot")
        elif expected[table] != restored[table]:
            problems.append(f"{table}: {restored[table]} rows restored, {expected[table]} dumped")
    return problems


def select_keep(dumps: list[tuple[str, float]], daily: int, weekly: int, monthly: int) -> set[str]:
    """Names to keep from (name, mtime) pairs: newest per day/ISO week/month, newest overall always.

    Daily keeps the newest dump of each of the `daily` most recent days that have
    a dump (so a missed day does not shorten the history), likewise for weeks
    and months, the way restic's --keep-daily/--keep-weekly/--keep-monthly work.
    """
    ordered = sorted(dumps, key=lambda d: d[1], reverse=True)
    keep = {ordered[0][0]} if ordered else set()
    for count, bucket in ((daily, "%Y-%m-%d"), (weekly, "%G-W%V"), (monthly, "%Y-%m")):
        seen = []
        for name, mtime in ordered:
            key = dt.datetime.fromtimestamp(mtime, dt.timezone.utc).strftime(bucket)
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            keep.add(name)
    return keep


def render_metrics(values: dict[str, float]) -> str:
    help_text = {
        "rpa_backup_last_run_timestamp_seconds": "When the last backup run ended.",
        "rpa_backup_last_run_success": "1 if the last backup run succeeded (dump, verification, pruning).",
        "rpa_backup_last_success_timestamp_seconds": "When the last successful backup ended.",
        "rpa_backup_last_duration_seconds": "Wall time of the last successful backup.",
        "rpa_backup_last_size_bytes": "Size of the newest good dump.",
        "rpa_backup_last_verify_success": "1 if the last dump passed its checksum and full-read check.",
        "rpa_backup_dumps": "Dumps kept in the backup directory.",
        "rpa_backup_offsite_success": "1 if the last off-site copy succeeded (absent when not configured).",
        "rpa_backup_drill_last_timestamp_seconds": "When the last restore drill ended.",
        "rpa_backup_drill_success": "1 if the last restore drill matched every table's row count.",
    }
    lines = []
    for name in sorted(values):
        lines.append(f"# HELP {name} {help_text.get(name, name)}")
        lines.append(f"# TYPE {name} gauge")
        value = float(values[name])
        lines.append(f"{name} {int(value)}" if value.is_integer() else f"{name} {value:.3f}")
    return "\n".join(lines) + "\n"


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                continue
    return out


def dump_name(db: str, when: dt.datetime) -> str:
    return f"{db}-{when.strftime('%Y%m%dT%H%M%SZ')}.dump"


def free_dump_name(db: str, when: dt.datetime, taken: set[str]) -> str:
    """dump_name, moved on by whole seconds past any name already taken: two backups within one
    second must not replace each other (the names still sort by time)."""
    while (name := dump_name(db, when)) in taken:
        when += dt.timedelta(seconds=1)
    return name


# ------------------------------------------------------------------ files
def log(msg: str) -> None:
    print(msg, flush=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text.encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- backups
class Backups:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.dir = Path(cfg["backup_dir"])
        self.db = cfg["database"]
        self.container = cfg["container"]
        self.metrics_file = Path(cfg["textfile_dir"]) / "rpa_backup.prom" if cfg.get("textfile_dir") else None

    # docker exec into the postgres container, as the postgres superuser over its socket
    def pg(self, *argv: str, stdin=None, stdout=subprocess.PIPE, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["docker", "exec", *(["-i"] if stdin is not None else []), self.container, *argv]
        proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False)
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise BackupError(f"{argv[0]} failed (exit {proc.returncode}): {err[-1500:]}")
        return proc

    def psql(self, db: str, sql: str) -> str:
        return self.pg("psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", db,
                       "-c", sql).stdout.decode()

    def dumps(self) -> list[Path]:
        """Good dumps (final names), newest first by modification time."""
        if not self.dir.is_dir():
            return []
        found = [p for p in self.dir.iterdir() if DUMP_RE.match(p.name) and p.is_file()]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def compression(self) -> list[str]:
        probe = self.pg("pg_dump", "-U", "postgres", "-Z", "zstd:1", "--schema-only", "-f", "/dev/null",
                        self.db, check=False)
        return ["-Z", f"zstd:{self.cfg.get('zstd_level', 3)}"] if probe.returncode == 0 else ["-Z", "6"]

    # ------------------------------------------------------------- steps
    def dump(self, target: Path) -> dict[str, int]:
        """pg_dump -Fc into target; row counts from the same snapshot."""
        holder = subprocess.Popen(
            ["docker", "exec", "-i", self.container, "psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
             "-U", "postgres", "-d", self.db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            holder.stdin.write("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();\n")
            holder.stdin.flush()
            snapshot = holder.stdout.readline().strip()
            if not re.fullmatch(r"[0-9A-F-]+", snapshot):
                holder.kill()
                raise BackupError(f"could not export a snapshot from {self.db}: {holder.stderr.read()[-800:]}")
            # Root-only from the first byte: a dump holds every row of the application.
            with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                self.pg("pg_dump", "-U", "postgres", "-Fc", *self.compression(), f"--snapshot={snapshot}",
                        self.db, stdout=out)
                out.flush()
                os.fsync(out.fileno())
            holder.stdin.write(COUNTS_SQL + "\nCOMMIT;\n")
            holder.stdin.close()
            counts_text = holder.stdout.read()
            if holder.wait(timeout=600) != 0:
                raise BackupError(f"counting rows failed: {holder.stderr.read()[-800:]}")
            return parse_counts(counts_text)
        finally:
            if holder.poll() is None:
                holder.kill()

    def full_read(self, path: Path) -> None:
        with open(path, "rb") as handle:
            self.pg("pg_restore", "-f", "/dev/null", stdin=handle)

    def verify(self, path: Path, expected_sha: str | None = None) -> None:
        if expected_sha is None:
            sha_file = path.with_name(path.name + ".sha256")
            if not sha_file.exists():
                raise BackupError(f"{path}: no checksum file {sha_file.name}")
            expected_sha = sha_file.read_text().split()[0]
        actual = sha256_of(path)
        if actual != expected_sha:
            raise BackupError(f"{path}: checksum mismatch (sha256 {actual}, expected {expected_sha}): "
                              "the file changed or is corrupt")
        try:
            self.full_read(path)
        except BackupError as exc:
            raise BackupError(f"{path}: pg_restore could not read the whole dump: {exc}") from None

    def prune(self) -> list[str]:
        dumps = self.dumps()
        keep = select_keep([(p.name, p.stat().st_mtime) for p in dumps], self.cfg["keep_daily"],
                           self.cfg.get("keep_weekly", 0), self.cfg.get("keep_monthly", 0))
        removed = []
        for p in dumps:
            if p.name not in keep:
                for extra in (p.with_name(p.name + ".sha256"), p.with_name(p.name + ".counts.json")):
                    extra.unlink(missing_ok=True)
                p.unlink()
                removed.append(p.name)
        if removed:
            fsync_dir(self.dir)
        return removed

    def offsite(self) -> None:
        repo = self.cfg.get("restic_repository")
        if not repo:
            return
        env = dict(os.environ, RESTIC_REPOSITORY=repo,
                   RESTIC_PASSWORD_FILE=self.cfg["restic_password_file"])
        env.update(self.cfg.get("restic_env") or {})
        if subprocess.run(["restic", "cat", "config"], env=env, capture_output=True).returncode != 0:
            init = subprocess.run(["restic", "init"], env=env, capture_output=True, text=True)
            if init.returncode != 0:
                raise BackupError(f"restic init {repo} failed: {init.stderr.strip()[-800:]}")
        run = subprocess.run(["restic", "backup", "--no-scan", "--tag", "rpa-backup",
                              "--exclude", ".*", str(self.dir)], env=env, capture_output=True, text=True)
        if run.returncode != 0:
            raise BackupError(f"restic backup to {repo} failed: {run.stderr.strip()[-800:]}")
        keep = ["--keep-daily", str(self.cfg["keep_daily"])]
        if self.cfg.get("keep_weekly"):
            keep += ["--keep-weekly", str(self.cfg["keep_weekly"])]
        if self.cfg.get("keep_monthly"):
            keep += ["--keep-monthly", str(self.cfg["keep_monthly"])]
        forget = subprocess.run(["restic", "forget", "--tag", "rpa-backup", "--prune", *keep],
                                env=env, capture_output=True, text=True)
        if forget.returncode != 0:
            raise BackupError(f"restic forget in {repo} failed: {forget.stderr.strip()[-800:]}")

    # ----------------------------------------------------------- metrics
    def set_metrics(self, drop: tuple[str, ...] = (), **values: float) -> None:
        if not self.metrics_file:
            return
        current = parse_metrics(self.metrics_file.read_text()) if self.metrics_file.exists() else {}
        current.update({f"rpa_backup_{k}": v for k, v in values.items()})
        for name in drop:
            current.pop(f"rpa_backup_{name}", None)
        self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        # node-exporter reads it: world-readable, and nothing secret in it.
        write_atomic(self.metrics_file, render_metrics(current), mode=0o644)

    # ---------------------------------------------------------- commands
    def backup(self) -> Path:
        start = time.time()
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.dir / free_dump_name(self.db, dt.datetime.now(dt.timezone.utc),
                                          {p.name for p in self.dir.iterdir()})
        tmp = self.dir / f".{final.name}.partial"
        try:
            counts = self.dump(tmp)
            digest = sha256_of(tmp)
            self.verify(tmp, digest)
            write_atomic(final.with_name(final.name + ".sha256"), f"{digest}  {final.name}\n")
            write_atomic(final.with_name(final.name + ".counts.json"), json.dumps(counts, indent=1) + "\n")
            os.replace(tmp, final)
            fsync_dir(self.dir)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            for extra in (final.with_name(final.name + ".sha256"), final.with_name(final.name + ".counts.json")):
                if not final.exists():
                    extra.unlink(missing_ok=True)
            self.set_metrics(last_run_timestamp_seconds=time.time(), last_run_success=0,
                             last_verify_success=0)
            if isinstance(exc, OSError):
                raise BackupError(f"writing the dump into {self.dir} failed: {exc}") from None
            raise
        removed = self.prune()
        size = final.stat().st_size
        took = time.time() - start
        log(f"backup {final} ({size} bytes, {len(counts)} tables) verified in {took:.1f}s; "
            f"pruned {len(removed)}: {', '.join(removed) or '-'}")
        self.set_metrics(last_run_timestamp_seconds=time.time(), last_run_success=1,
                         last_success_timestamp_seconds=time.time(), last_duration_seconds=round(took, 3),
                         last_size_bytes=size, last_verify_success=1, dumps=len(self.dumps()),
                         # No off-site copy configured: no stale verdict about one.
                         drop=() if self.cfg.get("restic_repository") else ("offsite_success",))
        if self.cfg.get("restic_repository"):
            try:
                self.offsite()
            except BackupError:
                self.set_metrics(offsite_success=0)
                raise
            self.set_metrics(offsite_success=1)
            log(f"copied {self.dir} to the off-site repository")
        return final

    def pick(self, which: str) -> Path:
        if which == "newest":
            dumps = self.dumps()
            if not dumps:
                raise BackupError(f"no dump in {self.dir}")
            return dumps[0]
        path = Path(which) if "/" in which else self.dir / which
        if not path.is_file():
            raise BackupError(f"{path}: no such dump")
        return path

    def drill(self) -> None:
        try:
            newest = self.pick("newest")
            self.verify(newest)
            counts_file = newest.with_name(newest.name + ".counts.json")
            try:
                expected = json.loads(counts_file.read_text())
            except (OSError, ValueError) as exc:
                raise BackupError(f"{counts_file}: the dump's row counts cannot be read: {exc}") from None
            self.psql("postgres", f"DROP DATABASE IF EXISTS {DRILL_DB} WITH (FORCE)")
            self.psql("postgres", f"CREATE DATABASE {DRILL_DB}")
            try:
                with open(newest, "rb") as handle:
                    self.pg("pg_restore", "-U", "postgres", "-d", DRILL_DB, "--no-owner", "--no-privileges",
                            "--exit-on-error", stdin=handle)
                restored = parse_counts(self.psql(DRILL_DB, COUNTS_SQL))
            finally:
                self.psql("postgres", f"DROP DATABASE IF EXISTS {DRILL_DB} WITH (FORCE)")
            problems = compare_counts(expected, restored)
            if problems:
                raise BackupError(f"restore drill of {newest.name} does not match: " + "; ".join(problems))
        except BaseException:
            self.set_metrics(drill_last_timestamp_seconds=time.time(), drill_success=0)
            raise
        self.set_metrics(drill_last_timestamp_seconds=time.time(), drill_success=1)
        log(f"restore drill of {newest.name}: {len(restored)} tables, every row count matches "
            f"({sum(restored.values())} rows)")

    def restore(self, which: str) -> None:
        path = self.pick(which)
        self.verify(path)
        with open(path, "rb") as handle:
            self.pg("pg_restore", "-U", "postgres", "-d", self.db, "--clean", "--if-exists",
                    "--single-transaction", "--exit-on-error", stdin=handle)
        log(f"restored {path.name} into {self.db}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rpa-backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--backup-dir", help="override the configured backup directory")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backup")
    sub.add_parser("drill")
    sub.add_parser("list")
    verify = sub.add_parser("verify")
    verify.add_argument("file")
    restore = sub.add_parser("restore")
    restore.add_argument("file", help="a dump's name or path, or 'newest'")
    restore.add_argument("--yes", action="store_true", help="required: the live database is replaced")
    args = parser.parse_args(argv)
    cfg = json.loads(Path(args.config).read_text())
    if args.backup_dir:
        cfg["backup_dir"] = args.backup_dir
    b = Backups(cfg)
    try:
        if args.command == "backup":
            b.backup()
        elif args.command == "verify":
            b.verify(b.pick(args.file))
            log(f"{args.file}: checksum and full read OK")
        elif args.command == "drill":
            b.drill()
        elif args.command == "list":
            for p in b.dumps():
                print(f"{p.name}\t{p.stat().st_size}")
        elif args.command == "restore":
            if not args.yes:
                raise BackupError("restore replaces the live database; pass --yes to confirm")
            b.restore(args.file)
    except BackupError as exc:
        print(f"rpa-backup {args.command} FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
