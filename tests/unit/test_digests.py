"""filter rpa_digests: deploy by digest, record what ran, roll back, prune (issue 18, items 4 and 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rpa.engine.plugins.filter import rpa_digests as d

FIXTURES = Path(__file__).parent / "fixtures"
REPO = "172.17.0.1:5000/rpa-engine/refapp"
A, B, C, D, E = (f"{REPO}@sha256:{c * 64}" for c in "abcde")


@pytest.mark.parametrize("ref, repo", [
    (f"{REPO}:0749177e2278", REPO),
    (A, REPO),
    ("registry.example.com/rpa-engine/backend:1.4.2", "registry.example.com/rpa-engine/backend"),
    ("mher/flower", "mher/flower"),
    ("localhost:5000/flower", "localhost:5000/flower"),  # a port is not a tag
])
def test_the_repository_of_a_reference(ref, repo):
    assert d.repo_of(ref) == repo


def test_a_pulled_tag_resolves_to_its_registrys_digest():
    # RepoDigests of an image pulled from two registries: the tag's repository decides.
    digests = ["rpa-testbed/refapp@sha256:" + "f" * 64, A]
    assert d.rpa_digest_ref(digests, f"{REPO}:0749177e2278") == A


@pytest.mark.parametrize("digests", [[], None, ["other/repo@sha256:" + "a" * 64], [f"{REPO}@sha256:abc"]])
def test_no_digest_from_the_tags_repository_is_an_error_naming_it(digests):
    with pytest.raises(AnsibleFilterError, match="rpa-engine/refapp:1"):
        d.rpa_digest_ref(digests, f"{REPO}:1")


def test_five_deploys_keep_three_digests_and_prune_the_rest():
    state, pruned = {}, []
    for ref in (A, B, C, D, E):
        out = d.rpa_image_state(state, {"backend": ref, "celery-worker": ref}, 3)
        state, pruned = out["state"], pruned + out["prune"]
    assert state == {"backend": [E, D, C], "celery-worker": [E, D, C]}
    assert pruned == [A, B]
    assert d.rpa_image_rollback(state, ["backend", "celery-worker"]) == {"backend": D, "celery-worker": D}


def test_an_image_another_service_still_keeps_is_not_pruned():
    state = {"backend": [B, A], "flower": [A]}
    out = d.rpa_image_state(state, {"backend": C}, 2)
    assert out["state"] == {"backend": [C, B], "flower": [A]} and out["prune"] == []


def test_a_rollback_moves_the_previous_digest_first_and_keeps_the_other():
    state = {"backend": [B, A]}
    back = d.rpa_image_rollback(state, ["backend"])
    out = d.rpa_image_state(state, back, 3)
    assert out == {"state": {"backend": [A, B]}, "prune": []}


def test_the_same_digest_again_changes_nothing():
    assert d.rpa_image_state({"backend": [B, A]}, {"backend": B}, 3) == {"state": {"backend": [B, A]}, "prune": []}


def test_a_service_that_never_changed_stays_as_it_is_in_a_rollback():
    assert d.rpa_image_rollback({"backend": [B, A], "flower": [A]}, ["backend", "flower"]) == {"backend": A, "flower": A}


@pytest.mark.parametrize("state, named", [
    ({"backend": [A], "flower": [A]}, "backend, flower"),  # nothing changed yet: nothing to go back to
    ({"backend": [B, A]}, "flower"),                        # never recorded
])
def test_a_rollback_without_a_previous_digest_names_the_services(state, named):
    with pytest.raises(AnsibleFilterError, match=f"no previous digest is recorded for {named}"):
        d.rpa_image_rollback(state, ["backend", "flower"])


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_below_one_is_refused(keep):
    with pytest.raises(AnsibleFilterError, match="app_image_keep"):
        d.rpa_image_state({}, {"backend": A}, keep)


# docker image inspect on the demo server (docker.io 26.1.5): a release pulled by a tag (two tags, one
# digest) and the first release, whose image the frontend also runs under the archive's own name.
PULLED_IMAGES = json.loads((FIXTURES / "docker_image_inspect_26.1_pulled.json").read_text())
RELEASE = "172.17.0.1:5000/rpa-engine/refapp@sha256:5dd99a7f9f7d971ea648b7be3680526c1567992ef8f00a7f8b2007dacf74678a"
FIRST = "172.17.0.1:5000/rpa-engine/refapp@sha256:52750bd8d75332934331e37463ff136f8a6cc11230b050173a37317dff038dad"


def test_a_pruned_image_goes_with_the_tags_it_was_pulled_by():
    """Removing only the digest reference would untag it and leave the image on the disk."""
    after = {"state": {"backend": [FIRST]}, "prune": [RELEASE]}
    assert d.rpa_image_prune_refs(PULLED_IMAGES, after) == [
        "172.17.0.1:5000/rpa-engine/refapp:test-1796091586", "172.17.0.1:5000/rpa-engine/refapp:test-1796091602",
        RELEASE]


def test_a_pruned_images_tags_of_another_repository_stay():
    after = {"state": {"backend": [RELEASE]}, "prune": [FIRST]}
    assert d.rpa_image_prune_refs(PULLED_IMAGES, after) == ["172.17.0.1:5000/rpa-engine/refapp:307339f55faa", FIRST]


def test_an_image_a_kept_digest_names_loses_only_the_pruned_reference():
    image = {"RepoTags": [f"{REPO}:v1"], "RepoDigests": [A, B]}
    assert d.rpa_image_prune_refs([image], {"state": {"backend": [B]}, "prune": [A]}) == [A]


def test_nothing_pruned_or_nothing_present_removes_nothing():
    assert d.rpa_image_prune_refs(PULLED_IMAGES, {"state": {"backend": [FIRST, RELEASE]}, "prune": []}) == []
    assert d.rpa_image_prune_refs([], {"state": {}, "prune": [A]}) == []
