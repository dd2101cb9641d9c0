"""The test bed's image cache keys: rebuild exactly when an input changes."""

from __future__ import annotations

import testbed


def test_context_hash_is_stable_and_tracks_content(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    first = testbed.context_hash(tmp_path, "sha256:aaa")
    assert testbed.context_hash(tmp_path, "sha256:aaa") == first
    assert testbed.context_hash(tmp_path, "sha256:bbb") != first  # new base image
    (tmp_path / "extra.conf").write_text("x\n")
    second = testbed.context_hash(tmp_path, "sha256:aaa")
    assert second != first
    (tmp_path / "extra.conf").write_text("y\n")
    assert testbed.context_hash(tmp_path, "sha256:aaa") != second


def test_base_hash_tracks_the_recipe(monkeypatch):
    first = testbed.base_hash()
    monkeypatch.setattr(testbed, "BASE_PACKAGES", [*testbed.BASE_PACKAGES, "curl"])
    assert testbed.base_hash() != first


def test_image_names():
    assert testbed.image_name(testbed.IMAGES_DIR / "server") == "rpa-testbed/server:latest"
