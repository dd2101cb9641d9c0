"""filter_plugins/rpa_images.py: image IDs from docker-save archives, plain or compressed, cached."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile

import pytest

from ansible_collections.rpa.engine.plugins.filter import rpa_images

# Docker 26.1's docker-save manifest (OCI layout), trimmed to one image.
MANIFEST = [{"Config": "blobs/sha256/2163cad93ca92d3a348abe7bf69ae5baa59ab5ff6ea46edeae5b54b6dd2fe6f7",
             "RepoTags": ["rpa-testbed/redis:latest"], "Layers": ["blobs/sha256/aa"]}]
ID = "sha256:2163cad93ca92d3a348abe7bf69ae5baa59ab5ff6ea46edeae5b54b6dd2fe6f7"


def archive_bytes() -> bytes:
    """A docker-save shaped tar with manifest.json last, as docker writes it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (("blobs/sha256/aa", b"x" * 4096), ("manifest.json", json.dumps(MANIFEST).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("kind", ["tar", "gzip", "zstd"])
def test_ids_from_plain_and_compressed_archives(tmp_path, kind):
    path = tmp_path / f"a.{kind}"
    data = archive_bytes()
    if kind == "gzip":
        data = gzip.compress(data)
    elif kind == "zstd":
        if not shutil.which("zstd"):
            pytest.fail("zstd is needed on the controller (testbed.py prereqs installs it)")
        data = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
    path.write_bytes(data)
    assert rpa_images.rpa_image_archive_ids(str(path), cache=tmp_path / "cache.json") == [ID]


def test_ids_are_cached_per_archive_version(tmp_path):
    path, cache = tmp_path / "a.tar", tmp_path / "cache.json"
    path.write_bytes(archive_bytes())
    assert rpa_images.rpa_image_archive_ids(str(path), cache=cache) == [ID]
    key = next(iter(json.loads(cache.read_text())))
    # The cache answers for the same file; a rewritten file (new size/mtime) is read again.
    cache.write_text(json.dumps({key: ["sha256:from-cache"]}))
    assert rpa_images.rpa_image_archive_ids(str(path), cache=cache) == ["sha256:from-cache"]
    path.write_bytes(archive_bytes() + b"\0" * 1024)
    assert rpa_images.rpa_image_archive_ids(str(path), cache=cache) == [ID]


def test_an_archive_without_manifest_is_refused(tmp_path):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("other")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(Exception, match="not a readable `docker save` archive"):
        rpa_images.rpa_image_archive_ids(str(path), cache=tmp_path / "c.json")


def test_archives_missing():
    assert rpa_images.image_ids_from_manifest([{"Config": "abc.json"}]) == ["sha256:abc"]


def test_production_default_images_are_pinned_to_a_version():
    """.compose-lint.yml turns CL-0004 off for the test bed's local :latest images; this keeps it honest."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    refs = {}
    for defaults in sorted(root.glob("roles/*/defaults/main.yml")):
        data = yaml.safe_load(defaults.read_text()) or {}
        refs.update({k: v for k, v in data.items() if k.endswith("_image") and isinstance(v, str)})
        refs.update({f"app_images[{k}]": v for k, v in (data.get("app_images") or {}).items()})
    assert "monitoring_docker_api_proxy_image" in refs and len(refs) >= 15
    for name, ref in refs.items():
        tag = ref.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest" and any(ch.isdigit() for ch in tag), f"{name}={ref} is not pinned"
