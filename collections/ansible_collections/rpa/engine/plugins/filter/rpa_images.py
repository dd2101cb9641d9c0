"""Read image IDs from `docker save` archives on the controller.

Lets the docker role skip copying a (large) archive to the server when every
image in it is already loaded there: the IDs come from the archive's own
manifest.json, so nothing is transferred to learn them.

Archives may be plain (`docker save -o app.tar`) or compressed with zstd or
gzip (`docker save IMAGE... | zstd -T0 > app.tar.zst`), which `docker load`
reads as they are and which travel three times faster. `docker save` writes
manifest.json last, so a compressed archive is read to its end to find it;
the IDs are therefore cached per archive (path, size, modification time) in
~/.cache/rpa-engine/archive-ids.json and read only once per new archive.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from ansible.errors import AnsibleFilterError

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rpa-engine" / "archive-ids.json"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def image_ids_from_manifest(manifest: list) -> list[str]:
    """Image IDs (sha256:...) named by a docker-save manifest.json.

    Both archive layouts are handled: the legacy one ("<id>.json") and the
    OCI one ("blobs/sha256/<id>").
    """
    ids = []
    for entry in manifest:
        config = entry.get("Config", "")
        digest = config.rsplit("/", 1)[-1].removesuffix(".json")
        if not digest:
            raise ValueError(f"manifest entry without a Config: {entry!r}")
        ids.append(digest if digest.startswith("sha256:") else f"sha256:{digest}")
    return ids


def _manifest_from_stream(stream) -> list:
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if member.name in ("manifest.json", "./manifest.json"):
                handle = archive.extractfile(member)
                if handle is None:
                    raise ValueError("manifest.json is not a regular file")
                return json.load(handle)
    raise ValueError("no manifest.json in the archive")


def read_manifest(path: str) -> list:
    """manifest.json of a docker-save archive: plain tar (random access), gzip, or zstd (through `zstd -dc`)."""
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic.startswith(GZIP_MAGIC):
        with gzip.open(path, "rb") as stream:
            return _manifest_from_stream(stream)
    if magic == ZSTD_MAGIC:
        zstd = shutil.which("zstd")
        if zstd is None:
            raise ValueError("a zstd-compressed archive needs the zstd command on the controller")
        proc = subprocess.Popen([zstd, "-dc", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            return _manifest_from_stream(io.BufferedReader(proc.stdout, buffer_size=1 << 20))
        finally:
            proc.stdout.close()
            proc.kill()
            proc.wait()
    with tarfile.open(path) as archive:  # plain tar: headers only, the layers are skipped over
        member = archive.extractfile("manifest.json")
        if member is None:
            raise ValueError("manifest.json is not a regular file")
        return json.load(member)


def _cache_key(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


def rpa_image_archive_ids(path: str, cache: Path = CACHE) -> list[str]:
    """Image IDs inside the docker-save archive at path (on the controller)."""
    try:
        key = _cache_key(path)
        try:
            known = json.loads(cache.read_text())
        except (OSError, ValueError):
            known = {}
        if isinstance(known.get(key), list):
            return known[key]
        ids = image_ids_from_manifest(read_manifest(path))
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise AnsibleFilterError(f"{path} is not a readable `docker save` archive: {exc}") from exc
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        known[key] = ids
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(cache)
    except OSError:
        pass  # only a cache: the next run reads the archive again
    return ids


def rpa_archives_missing(archives: list[str], loaded_ids: list[str]) -> list[str]:
    """The archives holding at least one image whose ID is not in loaded_ids."""
    loaded = set(loaded_ids or [])
    return [path for path in archives or [] if not set(rpa_image_archive_ids(path)) <= loaded]


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_image_archive_ids": rpa_image_archive_ids,
                "rpa_archives_missing": rpa_archives_missing}
