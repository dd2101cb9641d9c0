"""rpa_rotation_plan: the steps of a rotation, from the real catalogue (catalogue/secrets.yml)."""

from __future__ import annotations

import time

from ansible_collections.rpa.engine.plugins.filter import rpa_rotation
import yaml

from conftest import ROOT

CATALOGUE = yaml.safe_load((ROOT / "catalogue" / "secrets.yml").read_text())["secrets"]
CURRENT = {e["vault_key"]: f"<old {n}>" for n, e in CATALOGUE.items()}
PENDING = {e["vault_key"]: f"<new {n}>" for n, e in CATALOGUE.items()}
NOW = {"postgres_app_login": "rpa_engine", "postgres_app_user": "rpa_engine",
       "app_jwt_secret_previous": "<older jwt>", "app_deploy_token_previous": ""}


def plan(*names):
    return rpa_rotation.rpa_rotation_plan(list(names), CATALOGUE, CURRENT, PENDING, NOW)


def test_redis_both_passwords_while_clients_move_then_only_the_new_one():
    p = plan("redis_password")
    assert p["set"] == [{"roles": ["redis", "monitoring", "app"], "vars": {
        "redis_password": "<new redis_password>", "redis_password_previous": "<old redis_password>",
        "app_redis_password": "<new redis_password>", "monitoring_redis_password": "<new redis_password>"}}]
    # Rolled back: both again while the clients move back, then only the vault's.
    assert [step["roles"] for step in p["rollback"]] == [["redis"], ["monitoring", "app"], ["redis"]]
    assert p["rollback"][0]["vars"]["redis_password"] == "<old redis_password>"
    assert p["rollback"][0]["vars"]["redis_password_previous"] == "<new redis_password>"
    assert p["rollback"][2]["vars"]["redis_password_previous"] == ""
    assert p["finish"][0]["roles"] == ["redis"]
    assert p["finish"][0]["vars"]["redis_password_previous"] == ""
    assert {"variable": "redis_password", "value": "<old redis_password>", "expect": "refused"} in \
        p["verify_finish"]["redis"]
    assert p["vault"] == {"vault_redis_password": "<new redis_password>"} and p["grace"] == {}


def test_the_app_password_moves_to_the_other_login():
    p = plan("postgres_app_password")
    v = p["set"][0]["vars"]
    assert (v["postgres_app_login"], v["postgres_app_login_previous"], v["app_database_user"]) == \
        ("rpa_engine_alt", "rpa_engine", "rpa_engine_alt")
    assert p["vault"] == {"vault_postgres_app_password": "<new postgres_app_password>",
                          "vault_postgres_app_login": "rpa_engine_alt"}
    assert {"variable": "postgres_app_password", "value": "<old postgres_app_password>", "expect": "refused",
            "login": "rpa_engine"} in p["verify_finish"]["postgres"]
    assert p["rollback"][0]["vars"]["postgres_app_login_previous"] == "rpa_engine_alt"
    # ...and the next rotation back.
    back = rpa_rotation.rpa_rotation_plan(["postgres_app_password"], CATALOGUE, CURRENT, PENDING,
                                          dict(NOW, postgres_app_login="rpa_engine_alt"))
    assert back["set"][0]["vars"]["postgres_app_login"] == "rpa_engine"


def test_a_window_keeps_the_previous_value_and_a_rollback_restores_the_one_before():
    p = plan("jwt_secret")
    assert p["set"][0]["vars"] == {"app_jwt_secret": "<new jwt_secret>", "app_jwt_secret_previous": "<old jwt_secret>"}
    assert p["rollback"] == [{"roles": ["app"], "vars": {"app_jwt_secret": "<old jwt_secret>",
                                                         "app_jwt_secret_previous": "<older jwt>"}}]
    assert p["finish"] == [] and p["previous"] == {"vault_jwt_secret": "<old jwt_secret>"}
    assert p["grace"] == {"vault_jwt_secret": 1800}
    assert {"variable": "app_jwt_secret", "value": "<old jwt_secret>", "expect": "accepted"} in p["verify"]["app"]


def test_an_operator_login_refuses_the_old_value_at_once():
    p = plan("flower_password", "grafana_admin_password", "caddy_grafana_password")
    assert p["set"][0]["roles"] == ["monitoring", "caddy", "app"]
    assert {"variable": "app_flower_password", "value": "<old flower_password>", "expect": "refused"} in p["verify"]["app"]
    assert {"variable": "caddy_grafana_password", "value": "<old caddy_grafana_password>", "expect": "refused"} in \
        p["verify"]["caddy"]


def test_every_secret_at_once_orders_owners_before_their_clients():
    p = plan(*CATALOGUE)
    assert p["set"][0]["roles"] == ["postgres", "patroni", "redis", "monitoring", "caddy", "app"]
    assert set(p["vault"]) == {e["vault_key"] for e in CATALOGUE.values()} | {"vault_postgres_app_login"}
    # The consumers prove the new values work for them too (the exporters log in, the backend's health).
    assert {"variable": "monitoring_postgres_password", "value": "<new postgres_monitor_password>",
            "expect": "accepted"} in p["verify"]["monitoring"]
    assert {"variable": "app_redis_password", "value": "<new redis_password>", "expect": "accepted"} in p["verify"]["app"]


def test_a_rotation_inside_a_window_is_noticed():
    meta = {"vault_jwt_secret": {"rotated_at": 1, "previous_until": time.time() + 600}}
    assert rpa_rotation.rpa_rotation_in_window(["jwt_secret", "redis_password"], CATALOGUE, meta) == ["jwt_secret"]
    assert rpa_rotation.rpa_rotation_in_window(["jwt_secret"], CATALOGUE, {}) == []


def test_patronis_logins_are_set_and_proved_by_the_patroni_role():
    # Left out of every step once (patroni was missing from the role order): the vault alone was renewed.
    p = plan("patroni_replication_password", "patroni_restapi_password")
    assert p["set"] == [{"roles": ["patroni"], "vars": {
        "patroni_replication_password": "<new patroni_replication_password>",
        "patroni_restapi_password": "<new patroni_restapi_password>"}}]
    assert {"variable": "patroni_replication_password", "value": "<new patroni_replication_password>",
            "expect": "accepted"} in p["verify"]["patroni"]
    # No overlap: the old value is refused from the set step on.
    assert {"variable": "patroni_restapi_password", "value": "<old patroni_restapi_password>",
            "expect": "refused"} in p["verify"]["patroni"]
    assert [step["roles"] for step in p["rollback"]] == [["patroni"]]


def test_every_owner_and_consumer_of_the_catalogue_has_its_place_in_the_order():
    roles = {e["owner"] for e in CATALOGUE.values()} | {r for e in CATALOGUE.values() for r in e["consumers"]}
    assert roles <= set(rpa_rotation.ROLE_ORDER), roles - set(rpa_rotation.ROLE_ORDER)
