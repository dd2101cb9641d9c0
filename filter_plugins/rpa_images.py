"""Read image IDs from `docker save` archives on the controller.

Lets the docker role skip copying a (large) archive to the server when every
image in it is already loaded there: the IDs come from the archive's own
manifest.json, so nothing is transferred to learn them.
"""

from __future__ import annotations

import json
import tarfile

from ansible.errors import AnsibleFilterError


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


def rpa_image_archive_ids(path: str) -> list[str]:
    """Image IDs inside the docker-save archive at path (on the controller)."""
    try:
        with tarfile.open(path) as archive:
            member = archive.extractfile("manifest.json")
            if member is None:
                raise AnsibleFilterError(f"{path}: manifest.json is not a regular file")
            return image_ids_from_manifest(json.load(member))
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise AnsibleFilterError(f"{path} is not a readable `docker save` archive: {exc}") from exc


def rpa_archives_missing(archives: list[str], loaded_ids: list[str]) -> list[str]:
    """The archives holding at least one image whose ID is not in loaded_ids."""
    loaded = set(loaded_ids or [])
    return [path for path in archives or [] if not set(rpa_image_archive_ids(path)) <= loaded]


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_image_archive_ids": rpa_image_archive_ids,
                "rpa_archives_missing": rpa_archives_missing}
