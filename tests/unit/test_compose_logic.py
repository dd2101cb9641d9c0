"""The health gate's decisions, from real output of Docker 26.1 / Compose 2.26.

fixtures/inspect_states.json is `docker inspect` of six containers captured
in the simulated server: healthy, starting (long start_period), unhealthy,
crash-looping (restart: unless-stopped, exits 3), exited (exit 1, no restart
policy) and running without a health check.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.rpa.engine.plugins.module_utils import rpa_compose as rc

FIX = Path(__file__).parent / "fixtures"
INSPECT = {o["Name"].lstrip("/").split("-")[1]: o
           for o in json.loads((FIX / "inspect_states.json").read_text())}


def state(name):
    return rc.container_state(INSPECT[name])


# ------------------------------------------------------------ observation
def test_container_state_reads_compose_labels_and_health():
    s = state("unhealthy")
    assert s["service"] == "unhealthy"
    assert s["status"] == "running" and s["health"] == "unhealthy"
    assert s["health_output"] == "connection refused by probe"
    assert len(s["config_hash"]) == 64 and s["image_id"].startswith("sha256:")
    assert s["image_ref"] == "rpa-testbed/redis:latest"


@pytest.mark.parametrize(("name", "verdict", "reason"), [
    ("healthy", rc.READY, "is healthy"),
    ("nohealth", rc.READY, "is running (no health check)"),
    ("starting", rc.WAITING, "health is starting"),
    ("unhealthy", rc.FAILED, "is unhealthy: connection refused by probe"),
    ("exited", rc.FAILED, "exited with code 1"),
    ("crashloop", rc.FAILED, "is crash-looping (restarted 7 times, last exit code 3)"),
])
def test_assess_real_states(name, verdict, reason):
    assert rc.assess(state(name)) == (verdict, reason)


def test_a_restart_since_the_gate_began_is_a_crash_loop_even_while_running():
    s = dict(state("healthy"), restart_count=2)
    assert rc.assess(s, baseline_restarts=2)[0] == rc.READY
    assert rc.assess(s, baseline_restarts=1) == (
        rc.FAILED, "is crash-looping (restarted 1 times; running again for the moment)")


def test_oom_kill_and_missing_container_fail():
    assert rc.assess(dict(state("healthy"), oom_killed=True))[0] == rc.FAILED
    assert rc.assess(None) == (rc.FAILED, "no container exists for the service")


def test_parse_ps_ndjson_of_compose_2_26_and_array_of_older_releases():
    text = (FIX / "compose_ps_2.26.ndjson").read_text()
    rows = rc.parse_ps_json(text)
    assert sorted(r["Service"] for r in rows) == ["crashloop", "exited", "healthy", "nohealth", "starting",
                                                   "unhealthy"]
    assert rc.parse_ps_json(json.dumps(rows)) == rows  # Compose < 2.21 printed one JSON array
    assert rc.parse_ps_json("") == []


def test_parse_config_hashes():
    hashes = rc.parse_config_hashes((FIX / "config_hash_2.26.txt").read_text())
    assert set(hashes) >= {"postgres", "pgbouncer", "redis"}
    assert all(len(h) == 64 for h in hashes.values())


# ------------------------------------------------------------------ gate
def verdicts(**kw):
    return {s: rc.assess(state(n)) for s, n in kw.items()}


def test_gate_passes_only_after_the_stable_window():
    g = rc.Gate(["a", "b"], stable_seconds=5, timeout=60, started_at=0)
    ok = verdicts(a="healthy", b="nohealth")
    assert g.observe(ok, 1)[0] == "wait"
    assert g.observe(ok, 5)[0] == "wait"
    assert g.observe(ok, 6) == ("pass", "all services ready for 5s")


def test_gate_window_restarts_when_a_service_drops_back():
    g = rc.Gate(["a"], stable_seconds=5, timeout=60, started_at=0)
    g.observe(verdicts(a="healthy"), 1)
    g.observe(verdicts(a="starting"), 4)
    assert g.observe(verdicts(a="healthy"), 7)[0] == "wait"
    assert g.observe(verdicts(a="healthy"), 12)[0] == "pass"


def test_gate_fails_fast_naming_the_service():
    g = rc.Gate(["db", "cache"], stable_seconds=5, timeout=600, started_at=0)
    outcome, message = g.observe(verdicts(db="healthy", cache="crashloop"), 2)
    assert outcome == "fail"
    assert message == "cache is crash-looping (restarted 7 times, last exit code 3)"


def test_gate_times_out_naming_what_never_became_ready():
    g = rc.Gate(["db", "web"], stable_seconds=5, timeout=30, started_at=0)
    assert g.observe(verdicts(db="healthy", web="starting"), 29)[0] == "wait"
    assert g.observe(verdicts(db="healthy", web="starting"), 30) == (
        "fail", "timed out waiting for web (health is starting)")


def test_gate_fails_when_a_service_has_no_container():
    g = rc.Gate(["db"], stable_seconds=1, timeout=30, started_at=0)
    assert g.observe({}, 1)[0] == "fail"


def test_recreated_and_would_recreate():
    assert rc.recreated_services({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == ["b", "c"]
    assert rc.would_recreate({"a": "h1", "b": "h2"}, {"a": "h1", "b": "hX", "c": "h3"}) == ["b", "c"]


# -------------------------------------------------------------- assembly
def test_merge_is_deterministic_and_keeps_every_fragment():
    frags = {"redis": {"services": {"redis": {"image": "r"}}, "volumes": {"redis-data": {}}},
             "postgres": {"services": {"postgres": {"image": "p"}, "pgbouncer": {"image": "b"}}}}
    merged = rc.merge_fragments("rpa-engine", frags)
    assert merged["name"] == "rpa-engine"
    assert list(merged["services"]) == ["pgbouncer", "postgres", "redis"]
    assert merged["volumes"] == {"redis-data": {}}
    assert rc.merge_fragments("rpa-engine", dict(reversed(list(frags.items())))) == merged


def test_merge_refuses_a_service_defined_twice():
    with pytest.raises(rc.ComposeError, match="service 'redis' is defined by both fragment app and fragment redis"):
        rc.merge_fragments("p", {"redis": {"services": {"redis": {}}}, "app": {"services": {"redis": {}}}})


def test_merge_refuses_unknown_top_level_keys():
    with pytest.raises(rc.ComposeError, match="only services, volumes, networks are allowed"):
        rc.merge_fragments("p", {"x": {"services": {}, "secrets": {}}})


def test_env_is_literal_sorted_and_refuses_what_it_cannot_hold():
    text = rc.render_env({"redis": {"REDIS_PASSWORD": "a$b{c}"}, "pg": {"PG_X": 5, "FLAG": True}})
    assert text.splitlines()[1:] == ["FLAG='true'", "PG_X='5'", "REDIS_PASSWORD='a$b{c}'"]
    with pytest.raises(rc.ComposeError, match="single quote or a newline"):
        rc.render_env({"f": {"X": "it's"}})
    with pytest.raises(rc.ComposeError, match="must match"):
        rc.render_env({"f": {"lower": "x"}})
    with pytest.raises(rc.ComposeError, match="set by both"):
        rc.render_env({"a": {"X": "1"}, "b": {"X": "2"}})


def test_changed_env_keys_names_keys_never_values():
    old = rc.render_env({"f": {"A": "1", "B": "2"}})
    new = rc.render_env({"f": {"A": "1", "B": "3", "C": "4"}})
    assert rc.changed_env_keys(old, new) == ["B", "C"]
    assert rc.changed_env_keys(None, old) == ["A", "B"]


@pytest.mark.parametrize("name", ["Redis", "", "a b", "../x", None])
def test_fragment_names_are_checked(name):
    with pytest.raises(rc.ComposeError):
        rc.check_fragment_name(name)


# ------------------------------------------------------ the no-change path
def test_image_ls_of_docker_26_maps_every_tag_to_its_image():
    ids = rc.parse_image_ls((FIX / "image_ls_26.1.ndjson").read_text())
    assert ids["rpa-testbed/redis:latest"] == "sha256:2163cad93ca92d3a348abe7bf69ae5baa59ab5ff6ea46edeae5b54b6dd2fe6f7"
    assert len(ids) == 8
    assert all(i.startswith("sha256:") and len(i) == 71 for i in ids.values())
    assert not any("<none>" in ref for ref in ids)
    pulled = json.dumps({"Repository": "postgres", "Tag": "17.2-bookworm", "ID": "sha256:" + "a" * 64,
                         "Digest": "sha256:" + "b" * 64})
    assert rc.parse_image_ls(pulled) == {"postgres:17.2-bookworm": "sha256:" + "a" * 64,
                                         "postgres@sha256:" + "b" * 64: "sha256:" + "a" * 64}


@pytest.mark.parametrize(("ref", "listed"), [
    ("redis", "redis:latest"),
    ("docker.io/library/redis:8.0.2", "redis:8.0.2"),
    ("docker.io/grafana/grafana:11.3.1", "grafana/grafana:11.3.1"),
    ("registry.example.com:5000/rpa/backend", "registry.example.com:5000/rpa/backend:latest"),
    ("registry.example.com:5000/rpa/backend:1.4", "registry.example.com:5000/rpa/backend:1.4"),
    ("quay.io/prometheuscommunity/postgres-exporter@sha256:" + "c" * 64,
     "quay.io/prometheuscommunity/postgres-exporter@sha256:" + "c" * 64),
])
def test_references_are_spelled_as_the_image_listing_spells_them(ref, listed):
    assert rc.normalize_image_ref(ref) == listed


def test_cached_hashes_only_for_the_files_they_came_from():
    digest = rc.project_digest("services: {}\n", "A='1'\n")
    cache = rc.render_hash_cache(digest, {"redis": "h1"})
    assert rc.cached_hashes(cache, digest) == {"redis": "h1"}
    assert rc.cached_hashes(cache, rc.project_digest("services: {}\n", "A='2'\n")) is None
    # The two files are kept apart: moving a byte from one to the other is a change.
    assert rc.project_digest("ab", "c") != rc.project_digest("a", "bc")
    assert rc.cached_hashes(None, digest) is None
    assert rc.cached_hashes("not json", digest) is None
    assert rc.cached_hashes('{"digest": "%s"}' % digest, digest) is None


def settled_case(**changes):
    healthy = state("healthy")
    live = dict(healthy, **changes)
    return rc.settled(["redis"], {"redis": live}, {"redis": healthy["config_hash"]},
                      {"rpa-testbed/redis:latest": healthy["image_id"]})


def test_a_running_healthy_container_with_the_projects_hash_and_image_is_settled():
    assert settled_case() is True
    assert rc.settled(["x"], {"x": state("nohealth")}, {"x": state("nohealth")["config_hash"]},
                      {rc.normalize_image_ref(state("nohealth")["image_ref"]): state("nohealth")["image_id"]})


@pytest.mark.parametrize("changes", [
    {"status": "exited"}, {"restarting": True}, {"health": "starting"}, {"health": "unhealthy"},
    {"config_hash": "0" * 64}, {"config_hash": ""}, {"image_id": "sha256:" + "f" * 64},
    {"image_ref": "rpa-testbed/redis:8.0"},
], ids=str)
def test_anything_else_takes_the_full_path(changes):
    assert settled_case(**changes) is False


def test_a_missing_container_or_hash_is_not_settled():
    healthy = state("healthy")
    images = {"rpa-testbed/redis:latest": healthy["image_id"]}
    assert rc.settled(["redis"], {}, {"redis": healthy["config_hash"]}, images) is False
    assert rc.settled(["redis"], {"redis": healthy}, {}, images) is False


# ------------------------------------------------------- maintenance silence
def test_maintenance_spec_needs_url_server_and_alerts():
    good = '{"url": "http://127.0.0.1:9093", "server": "rpa-1", "alerts": ["TargetDown"]}'
    assert rc.maintenance_spec(good)["server"] == "rpa-1"
    for bad in (None, "", "not json", "[]", '{"url": "http://127.0.0.1:9093", "server": "rpa-1", "alerts": []}',
                '{"server": "rpa-1", "alerts": ["TargetDown"]}'):
        assert rc.maintenance_spec(bad) is None, bad


def test_the_silence_is_scoped_to_the_server_and_the_alerts_and_ends_by_itself():
    spec = {"url": "http://127.0.0.1:9093", "server": "rpa-1", "alerts": ["TargetDown", "EndpointDown"]}
    body = rc.silence_request(spec, "app", ["backend", "frontend"], 1764500000, 480)
    assert body["matchers"] == [
        {"name": "server", "value": "rpa-1", "isRegex": False, "isEqual": True},
        {"name": "alertname", "value": "TargetDown|EndpointDown", "isRegex": True, "isEqual": True}]
    assert (body["startsAt"], body["endsAt"]) == ("2025-11-30T10:53:20Z", "2025-11-30T11:01:20Z")
    assert body["createdBy"] == "rpa_compose"
    assert body["comment"] == "planned work: fragment app recreating backend, frontend"


# ------------------------------------------------------ start-first rollouts
# fixtures/docker_inspect_start_first.json: `docker inspect` of a service's two containers in the middle of a
# start-first rollout (Compose 2.26, Docker 26.1: `up --no-recreate --scale web=2 web` after the
# environment changed), published on the range 127.0.0.1:3100-3101. Container 1 runs the old definition.
ROLLOUT = json.loads((FIX / "docker_inspect_start_first.json").read_text())
ROLLOUT_STATES = sorted((rc.container_state(o) for o in ROLLOUT), key=lambda s: s["name"])
NEW_HASH = "4120b41ad8a3728c949c28fa9401074004b254732a84aaf31d750b244fe39d59"  # `config --hash web` afterwards


def images_of(*states):
    return dict((rc.normalize_image_ref(s["image_ref"]), s["image_id"]) for s in states)


def test_each_container_of_the_range_holds_its_own_port():
    ports = sorted(rc.host_ports(o)["3000/tcp"] for o in ROLLOUT)
    assert ports == [[3100], [3101]]
    # The container port the image exposes but the service does not publish is left out.
    assert all(set(rc.host_ports(o)) == {"3000/tcp"} for o in ROLLOUT)


def test_a_changed_service_with_one_healthy_container_rolls_out_start_first():
    old, new = ROLLOUT_STATES
    assert (old["name"], new["name"]) == ("sf-web-1", "sf-web-2") and new["config_hash"] == NEW_HASH
    plan = rc.start_first_plan(["web"], ["web"], [old], {"web": NEW_HASH}, images_of(old))
    assert plan == {"web": old}
    # Not listed as start-first: Compose's own (stop-first) recreate.
    assert rc.start_first_plan(["web"], [], [old], {"web": NEW_HASH}, images_of(old)) == {}


def test_an_unchanged_service_rolls_out_only_when_asked_to():
    old = ROLLOUT_STATES[0]
    assert rc.start_first_plan(["web"], ["web"], [old], {"web": old["config_hash"]}, images_of(old)) == {}
    assert rc.start_first_plan(["web"], ["web"], [old], {"web": old["config_hash"]}, images_of(old),
                               recreate=["web"]) == {"web": old}
    # A tag re-pointed at another image is a change, as it is for Compose.
    moved = {rc.normalize_image_ref(old["image_ref"]): "sha256:" + "0" * 64}
    assert rc.start_first_plan(["web"], ["web"], [old], {"web": old["config_hash"]}, moved) == {"web": old}


@pytest.mark.parametrize("why, states", [
    ("nothing runs: nothing to keep serving", []),
    ("two containers (an interrupted rollout): a plain up converges them", "both"),
    ("the running one is not healthy", "unhealthy"),
    ("the running one is stopped", "exited"),
])
def test_start_first_only_beside_one_healthy_container(why, states):
    old = ROLLOUT_STATES[0]
    if states == "both":
        states = ROLLOUT_STATES
    elif states == "unhealthy":
        states = [dict(old, health="unhealthy")]
    elif states == "exited":
        states = [dict(old, status="exited")]
    assert rc.start_first_plan(["web"], ["web"], states, {"web": NEW_HASH}, images_of(old)) == {}, why


def test_the_replacement_takes_the_name_compose_gives_the_first_container():
    assert rc.canonical_name("rpa-engine", "backend") == "rpa-engine-backend-1"


@pytest.mark.parametrize("ports, expected", [
    (["127.0.0.1:8000-8001:8000"], True),
    (["127.0.0.1:8000:8000"], False),     # a fragment stored before start-first: one fixed port
    (["8000-8001:8000"], True),
    ([{"target": 8000, "published": "8000-8001", "host_ip": "127.0.0.1"}], True),
    ([{"target": 8000, "published": 8000}], False),
    ([], False),
])
def test_only_a_service_publishing_a_port_range_can_start_first(ports, expected):
    assert rc.service_publishes_range({"ports": ports}) is expected


def test_one_off_containers_are_not_the_services():
    old = ROLLOUT_STATES[0]
    oneoff = dict(ROLLOUT_STATES[1], oneoff=True)
    assert rc.start_first_plan(["web"], ["web"], [old, oneoff], {"web": NEW_HASH}, images_of(old)) == {"web": old}
