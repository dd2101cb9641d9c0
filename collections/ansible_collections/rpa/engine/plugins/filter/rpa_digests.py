"""Deploy pulled images by digest, remember what ran, roll back to it, prune the rest.

A tag can move; a digest cannot. The app role resolves each pulled tag to the digest the registry
served (``RepoDigests`` of the pulled image) and puts ``REPO@sha256:...`` in the Compose file. After
a deploy passes the gate it records, per service, the digests it ran newest first (``app-images.json``
in the project directory), keeps the newest ``app_image_keep`` (3) and prunes the images no kept
digest names. ``--tags app -e app_rollback=true`` deploys each service's previous digest.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def repo_of(ref: str) -> str:
    """The repository of an image reference: without ``@digest`` and without ``:tag`` (a registry's port stays)."""
    ref = ref.split("@", 1)[0]
    name, sep, tag = ref.rpartition(":")
    return name if sep and "/" not in tag else ref


def rpa_digest_ref(repo_digests, ref: str) -> str:
    """``REPO@sha256:...`` for ref, from the pulled image's RepoDigests (one per repository it came from)."""
    repo = repo_of(ref)
    for entry in repo_digests or []:
        name, _, digest = str(entry).partition("@")
        if name == repo and DIGEST.match(digest):
            return f"{name}@{digest}"
    raise AnsibleFilterError(f"the image {ref} has no digest from {repo} (RepoDigests: {list(repo_digests or [])}); "
                             "was it pulled from that registry?")


def rpa_image_state(state, running: dict, keep: int) -> dict:
    """``{"state": {service: [refs newest first]}, "prune": [refs]}`` after a deploy of ``running``.

    Each service keeps its ``keep`` newest distinct references (the one running first). ``prune`` lists
    the references that fell out of every service's list - images no rollback can ask for any more.
    """
    if int(keep) < 1:
        raise AnsibleFilterError(f"app_image_keep must be at least 1, got {keep}")
    state = state if isinstance(state, dict) else {}
    new = {}
    for service in sorted(set(state) | set(running)):
        history = [ref for ref in state.get(service) or [] if isinstance(ref, str)]
        if service in running:
            history = [running[service]] + [ref for ref in history if ref != running[service]]
        new[service] = history[:int(keep)]
    kept = {ref for refs in new.values() for ref in refs}
    dropped = {ref for refs in state.values() if isinstance(refs, list) for ref in refs if isinstance(ref, str)}
    return {"state": new, "prune": sorted(dropped - kept)}


def rpa_image_prune_refs(images, after: dict) -> list:
    """The references ``docker image rm`` needs to really remove the pruned images.

    ``images`` is ``docker image inspect`` of the pruned references (those still present). Removing a
    digest reference only untags it while the tag it was pulled by still names the image, and the disk
    stays full; so each pruned image's tags in the same repository go with it. Tags of other
    repositories (an archive loaded under its own name) stay, and so does every reference of an image
    that a kept digest still names.
    """
    pruned = set(after.get("prune") or [])
    kept = {ref for refs in (after.get("state") or {}).values() for ref in refs or []}
    out = []
    for image in images or []:
        digests = [str(ref) for ref in image.get("RepoDigests") or []]
        mine = [ref for ref in digests if ref in pruned]
        if not mine:
            continue
        if any(ref in kept for ref in digests):
            out += mine
            continue
        repos = {repo_of(ref) for ref in mine}
        out += mine + [str(tag) for tag in image.get("RepoTags") or [] if repo_of(str(tag)) in repos]
    return sorted(set(out))


def rpa_image_rollback(state, services) -> dict:
    """``{service: reference}`` to deploy for a rollback: each service's previous recorded reference, or its
    current one when it has none (it did not change since it was first recorded); an error when no service
    has a previous one or one has none recorded at all."""
    state = state if isinstance(state, dict) else {}
    unknown = [s for s in services if not state.get(s)]
    if unknown or not any(len(state[s]) >= 2 for s in services):
        raise AnsibleFilterError("app_rollback: no previous digest is recorded for %s (a rollback needs an earlier "
                                 "deploy by digest)" % ", ".join(unknown or services))
    return {s: state[s][1] if len(state[s]) >= 2 else state[s][0] for s in services}


class FilterModule:
    def filters(self):
        return {"rpa_digest_ref": rpa_digest_ref, "rpa_image_state": rpa_image_state,
                "rpa_image_rollback": rpa_image_rollback, "rpa_image_prune_refs": rpa_image_prune_refs}
