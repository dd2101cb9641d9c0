"""The shape of the deployment, derived from the inventory's groups, and what makes a shape impossible.

Groups name roles, not hosts (README, "When one server is not enough"): ``edge`` (Caddy, the public
door), ``app`` (the application services; Swarm workers when more than one), ``swarm_managers``,
``pg_cluster`` (Patroni + PostgreSQL), ``etcd_cluster`` (Patroni's DCS), ``redis_host``, ``monitoring``
(Prometheus, Alertmanager and the dashboards, scraping every tier host). An inventory
that uses none of them is the single-host shape of today, whatever its host is called, and nothing
here changes for it.

``rpa_topology`` returns the shape (``single``, ``split`` or ``ha``), the members of each group, and
the problems that must stop the run before anything changes, each naming the variable or group and
the fix. It reads only what the preflight play hands it: the groups, each tier host's
``rpa_private_address``, and the settings.
"""

from __future__ import annotations

import ipaddress
import re

TIERS = ("edge", "app", "swarm_managers", "pg_cluster", "etcd_cluster", "redis_host", "monitoring")
# postgres:17.2-bookworm, docker.io/library/postgres:17, registry.example.com/pg:16.4@sha256:...
IMAGE_MAJOR = re.compile(r":(\d+)(?:\.\d+)*(?:-[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$")


def image_major(image: str) -> int | None:
    """The PostgreSQL major version in an image reference's tag, or None without one."""
    found = IMAGE_MAJOR.search(str(image or ""))
    return int(found.group(1)) if found else None


def _members(groups: dict, name: str) -> list[str]:
    return list(dict.fromkeys(groups.get(name) or []))


def _odd_quorum(group: str, members: list[str], needed: bool, who: str) -> list[str]:
    """A Raft group (Swarm's managers, etcd) keeps a majority through one loss only with an odd count."""
    if not members:
        return [f"group {group} is empty: {who} need an odd number of hosts (3 in the ha example)."] if needed else []
    if len(members) % 2 == 0:
        return [f"group {group} has {len(members)} hosts ({', '.join(members)}): {who} need an odd number "
                "of hosts to keep a majority; add or remove one."]
    return []


def _address(value) -> bool:
    if value in (None, ""):
        return False
    try:
        ipaddress.ip_address(str(value).strip())
    except ValueError:
        return False
    return True


def rpa_topology(groups: dict, addresses: dict, postgres_image: str, settings: dict | None = None) -> dict:
    """``{shape, swarm, patroni, <tier>: [hosts], problems: [str]}``.

    groups: Ansible's ``groups``. addresses: ``{host: rpa_private_address}`` of the tier hosts.
    settings (all optional): ``pg_failover`` (bool, default: two or more pg_cluster hosts),
    ``pg_major`` (int, default: the image's), ``edge_upstreams`` (list of addresses Caddy balances
    across when the edge is not an app host), ``allow_db_on_app_hosts`` (bool), ``live_restore``
    (``{host: bool}``, each host's docker_live_restore). An encrypted overlay on a kernel without IPsec
    is the swarm role's preflight's to refuse: only a probe on the host can tell.
    """
    settings = settings or {}
    tiers = {name: _members(groups, name) for name in TIERS}
    out = dict(tiers, shape="single", swarm=False, patroni=False, problems=[])
    if not any(tiers.values()):
        return out
    problems = out["problems"]
    app, pg, edge = tiers["app"], tiers["pg_cluster"], tiers["edge"]
    managers, etcd = tiers["swarm_managers"], tiers["etcd_cluster"]
    for name in ("edge", "app", "pg_cluster"):
        if not tiers[name]:
            problems.append(f"the inventory uses the tier groups but group {name} is empty: every shape needs "
                            f"at least one {name} host (README, \"When one server is not enough\").")
    shared = sorted(set(app) & set(pg))
    if len(app) >= 2 or len(pg) >= 2:
        out["shape"] = "ha"
    elif app and pg and not shared:
        out["shape"] = "split"
    elif shared:
        problems.append(f"{shared[0]} is both the one app host and the one pg_cluster host: no shape runs the "
                        "application and a Patroni cluster of one member on one host. For one server use the "
                        "single-host inventory (no tier groups: Postgres and PgBouncer in Compose); for two, put "
                        "the database on a host of its own (the split example).")
    out["swarm"] = len(app) >= 2
    out["patroni"] = len(pg) >= 2 or bool(etcd)

    problems += _odd_quorum("swarm_managers", managers, out["swarm"],
                            "more than one app host runs the app tier on Docker Swarm, whose Raft managers")
    problems += _odd_quorum("etcd_cluster", etcd, out["patroni"], "Patroni keeps its leader lock in etcd, whose members")
    monitoring = tiers["monitoring"]
    if not monitoring:
        problems.append("the inventory uses the tier groups but group monitoring is empty: name the one host that "
                        "runs Prometheus and Alertmanager for every tier host (the witness in the ha example).")
    elif len(monitoring) > 1:
        problems.append(f"group monitoring has {len(monitoring)} hosts ({', '.join(monitoring)}): one Prometheus "
                        "scrapes every tier host; name one host.")
    elif monitoring[0] in pg:
        problems.append(f"monitoring host {monitoring[0]} is in pg_cluster: its exporters would reach the local "
                        "PostgreSQL from a container address that Patroni's pg_hba does not admit. Put monitoring "
                        "on a host outside pg_cluster (the witness in the ha example).")
    if len(tiers["redis_host"]) > 1:
        problems.append(f"group redis_host has {len(tiers['redis_host'])} hosts: Redis stays one instance (README, "
                        "\"When one server is not enough\", its single point); name one host.")
    failover = settings.get("pg_failover")
    failover = len(pg) >= 2 if failover is None else bool(failover)
    if failover and len(pg) < 2:
        problems.append(f"rpa_pg_failover=true needs at least two pg_cluster hosts (it has {len(pg)}): add a "
                        "replica, or set rpa_pg_failover=false.")
    if out["shape"] == "ha" and shared and not settings.get("allow_db_on_app_hosts"):
        problems.append(f"{', '.join(shared)} {'is' if len(shared) == 1 else 'are'} in both app and pg_cluster: "
                        "the ha shape keeps the database off the app hosts (they would compete for CPU and "
                        "disk, and fail together). Move them, or set rpa_allow_db_on_app_hosts=true.")
    outside = [h for h in edge if h not in app]
    if outside and len(app) == 1:
        problems.append(f"edge host {', '.join(outside)} is not in app, whose one host runs Compose with its ports "
                        "on its own loopback: nothing outside it can reach them. Put the edge host in app, or "
                        "add app hosts (several run the stack on Swarm, published for the edge).")
    if outside and not settings.get("edge_upstreams"):
        problems.append(f"edge host {', '.join(outside)} is not in app and rpa_edge_upstreams is empty: Caddy "
                        "would have no application to send requests to. Put it in app, or list the app "
                        "hosts' addresses in rpa_edge_upstreams.")

    tier_hosts = list(dict.fromkeys(h for name in TIERS for h in tiers[name]))
    for host in tier_hosts:
        value = addresses.get(host)
        if not _address(value):
            problems.append(f"{host}: rpa_private_address={value!r} must be the host's address on the private "
                            "network the tiers talk over (an IPv4 or IPv6 address, e.g. 10.0.0.11).")

    image = image_major(postgres_image)
    wanted = settings.get("pg_major")
    if out["patroni"] or out["shape"] == "split":
        if image is None:
            problems.append(f"postgres_image={postgres_image!r} has no version tag: the database hosts install "
                            "the same PostgreSQL major version from the distribution, so tag the image "
                            "(e.g. postgres:17.2-bookworm).")
        elif wanted not in (None, "") and int(wanted) != image:
            problems.append(f"rpa_pg_major={wanted} differs from postgres_image's major version ({image}): "
                            "the data moves between them with pg_dump/pg_restore of the same major version; "
                            f"set rpa_pg_major={image}, or change both.")
    if out["swarm"]:
        swarm_hosts = set(app) | set(tiers["swarm_managers"])
        restoring = sorted(h for h, on in (settings.get("live_restore") or {}).items() if on and h in swarm_hosts)
        if restoring:
            problems.append(f"docker_live_restore=true on {', '.join(restoring)}: Docker refuses swarm mode on an "
                            "engine with live-restore (\"--live-restore daemon configuration is incompatible with "
                            "swarm mode\", seen with docker.io 26.1). Set docker_live_restore=false for the app and "
                            "swarm_managers hosts: their containers then restart with the engine, and Swarm "
                            "reschedules them.")
        # playbooks/app_stack.yml deploys the stack from app[0], and the deployer's task updates services
        # through its own host's engine: both need a manager there.
        if app and managers and app[0] not in managers:
            problems.append(f"{app[0]}, the first app host, is not in swarm_managers: the application's stack is "
                            "deployed from it and its deployer runs on an app host that is a manager. Put "
                            f"{app[0]} in swarm_managers, or list a manager first in app.")
    return out


# What the tier hosts say to each other, by the group that listens: (name, listening group, client groups,
# TCP ports, UDP ports, other IP protocols). Swarm: 2377 (managers' Raft and joins), 7946 (gossip, both
# protocols), 4789 (the VXLAN overlay) and ESP (IP protocol 50), which carries the VXLAN packets of an
# encrypted overlay instead. etcd: 2380 between members, 2379 for its clients (Patroni on the pg_cluster
# hosts). Patroni: its REST API (8008) and PostgreSQL's replication connections (5432) between members.
PEER_SERVICES = (
    ("swarm", ("app", "swarm_managers"), ("app", "swarm_managers"), (2377, 7946), (4789, 7946), ("esp",)),
    ("etcd members", ("etcd_cluster",), ("etcd_cluster",), (2379, 2380), (), ()),
    ("etcd clients", ("etcd_cluster",), ("pg_cluster",), (2379,), (), ()),
    ("patroni", ("pg_cluster",), ("pg_cluster",), (5432, 8008), (), ()),
    # Each app host's HAProxy (roles/pg_endpoint): Postgres, and the REST API's /primary it checks.
    ("patroni clients", ("pg_cluster",), ("app",), (5432, 8008), (), ()),
    # Redis, published by Docker on the redis_host's private address (roles/redis: redis_published_addresses).
    ("redis clients", ("redis_host",), ("app",), (6379,), (), ()),
    # The app hosts' backend, frontend and deployer, published in host mode by the Swarm stack, for Caddy on
    # the edge; their ports are the app role's (rpa_peer_rules' ports: app_backend_port, app_frontend_port,
    # app_deployer_port).
    ("app upstreams", ("app",), ("edge",), (8000, 3000, 9000), (), ()),
    # Grafana, published on the monitoring host's private address for Caddy's /grafana/ route on the edge (the
    # monitoring role's monitoring_grafana_published_addresses): no port unless rpa_peer_rules' ports give one
    # (the common role: the monitoring role's monitoring_grafana_port while caddy_grafana_route is on).
    ("grafana", ("monitoring",), ("edge",), (), (), ()),
    # What the monitoring host's Prometheus scrapes (rpa_monitoring_targets): Debian's node exporter on every
    # other tier host; the engine's metrics (metrics-addr: swarm_manager_nodes) on the Swarm hosts; etcd's
    # metrics listener; Patroni's REST API (/metrics) and PostgreSQL for the exporter's login per member;
    # Redis for its exporter; Caddy's metrics listener on the edge (the caddy role's caddy_metrics_port).
    ("node metrics", TIERS, ("monitoring",), (9100,), (), ()),
    ("engine metrics", ("app", "swarm_managers"), ("monitoring",), (9323,), (), ()),
    ("etcd metrics", ("etcd_cluster",), ("monitoring",), (2381,), (), ()),
    ("patroni metrics", ("pg_cluster",), ("monitoring",), (5432, 8008), (), ()),
    ("redis metrics", ("redis_host",), ("monitoring",), (6379,), (), ()),
    ("caddy metrics", ("edge",), ("monitoring",), (2020,), (), ()),
)


def rpa_peer_rules(groups: dict, addresses: dict, host: str, ports: dict | None = None) -> list[dict]:
    """The firewall's peer rules for ``host``: ``[{name, v4, v6, tcp, udp, protocols}]``, one per service it listens
    for, admitting only the other tier hosts that talk to it, by their ``rpa_private_address``. A peer that an
    earlier rule already admits to every port of a later one (an etcd member that is also Patroni's client)
    is left out of the later rule, and a rule left with nobody is dropped. Empty for the single-host shape (no
    tier groups) and for a host that listens for nobody. Unparsable addresses are left out here; the shape's
    preflight refuses them by name. ``ports`` replaces a service's TCP ports by name (``{"app upstreams":
    [8000, 3000, 9000]}``: the app role's). The app hosts' upstreams exist only with more than one app host (Swarm):
    the split shape's one app host runs Compose behind its own Caddy."""
    ports = ports or {}
    parsed = {}
    for name, value in addresses.items():
        if _address(value):
            parsed[name] = ipaddress.ip_address(str(value).strip())
    own = parsed.get(host)
    rules, admitted = [], []
    for name, listeners, clients, tcp, udp, protocols in PEER_SERVICES:
        if host not in {h for g in listeners for h in _members(groups, g)}:
            continue
        # Both exist only on Swarm (more than one app host): the upstreams published for the edge, and the
        # engines' metrics-addr (the docker role's docker_metrics_address).
        if name in ("app upstreams", "engine metrics") and len(_members(groups, "app")) < 2:
            continue
        tcp = tuple(int(p) for p in ports.get(name, tcp))
        if not (tcp or udp or protocols):
            continue
        peers = {parsed[h] for g in clients for h in _members(groups, g) if h != host and h in parsed} - {own}
        for earlier_tcp, earlier_udp, earlier_protocols, earlier_peers in admitted:
            if set(tcp) <= earlier_tcp and set(udp) <= earlier_udp and set(protocols) <= earlier_protocols:
                peers -= earlier_peers
        admitted.append((set(tcp), set(udp), set(protocols), peers))
        if peers:
            rules.append({"name": name, "v4": [str(a) for a in sorted(p for p in peers if p.version == 4)],
                          "v6": [str(a) for a in sorted(p for p in peers if p.version == 6)], "tcp": list(tcp),
                          "udp": list(udp), "protocols": list(protocols)})
    return rules


def rpa_hostport(address, port=None) -> str:
    """``address:port`` as URLs, Prometheus, dockerd and etcd write it: an IPv6 address in brackets. Without a
    port, the host part alone (``[fd00::1]``), for a template that adds its own. The address is not checked
    (the preflights that own it do that); surrounding blanks are dropped."""
    address = str(address if address is not None else "").strip()
    host = f"[{address}]" if ":" in address else address
    return host if port in (None, "") else f"{host}:{int(port)}"


def rpa_monitoring_targets(groups: dict, addresses: dict, host: str, ports: dict | None = None) -> dict:
    """What the monitoring host's Prometheus scrapes on the other tier hosts (the firewall's ``* metrics`` peer
    rules admit exactly these): ``{job: [{host, target}]}`` for ``node`` (Debian's node exporter on every tier
    host but ``host`` itself, whose own runs in the monitoring project), ``engine`` (the Swarm hosts' engines),
    ``etcd``, ``patroni`` (the REST API's /metrics), ``postgres`` (each member's PostgreSQL, for an exporter of
    its own), and ``redis`` and ``caddy`` (one each, or none). Empty for the single-host shape, and when ``host``
    is not the monitoring host. ``ports`` replaces a job's port by name (``{"caddy": 2020}``). Hosts without a
    parsable address are left out; the shape's preflight refuses them by name."""
    ports = ports or {}
    if host not in _members(groups, "monitoring"):
        return {}
    tiers = {name: _members(groups, name) for name in TIERS}
    usable = {h for h, value in addresses.items() if _address(value)}
    swarm = tiers["app"] + tiers["swarm_managers"] if len(tiers["app"]) >= 2 else []
    wanted = (("node", [h for name in TIERS for h in tiers[name] if h != host], 9100),
              ("engine", swarm, 9323), ("etcd", tiers["etcd_cluster"], 2381), ("patroni", tiers["pg_cluster"], 8008),
              ("postgres", tiers["pg_cluster"], 5432), ("redis", tiers["redis_host"], 6379), ("caddy", tiers["edge"], 2020))
    out = {}
    for job, hosts, port in wanted:
        port = int(ports.get(job, port))
        out[job] = [{"host": h, "target": rpa_hostport(addresses[h], port)} for h in dict.fromkeys(hosts) if h in usable]
    return out


def rpa_peer_rules_problems(rules) -> list[str]:
    """What is wrong with a list of peer rules (the shape rpa_peer_rules returns), for an inventory that writes
    its own: each a mapping {name, v4, v6, tcp, udp, protocols} with single addresses of the right family,
    ports from 1 to 65535 and no IP protocol but ESP. Empty when all are fine."""
    if not isinstance(rules, list):
        return ["must be a list of rules {name, v4, v6, tcp, udp, protocols}"]
    found = []
    for index, rule in enumerate(rules):
        label = f"rule {index + 1}"
        if not isinstance(rule, dict) or not rule.get("name"):
            found.append(f"{label} must be a mapping with a name, v4, v6, tcp, udp and protocols")
            continue
        label = f"rule {rule['name']!r}"
        for family, version in (("v4", 4), ("v6", 6)):
            for value in rule.get(family) or []:
                if not _address(value) or ipaddress.ip_address(str(value).strip()).version != version:
                    found.append(f"{label}: {value!r} in {family} is not a single IPv{version} address")
        for proto in ("tcp", "udp"):
            for port in rule.get(proto) or []:
                if not (isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535):
                    found.append(f"{label}: {port!r} in {proto} is not a port from 1 to 65535")
        for protocol in rule.get("protocols") or []:
            if protocol != "esp":
                found.append(f"{label}: protocol {protocol!r} is not admitted (only esp)")
    return found


def rpa_private_addresses(hosts, hostvars) -> dict:
    """``{host: rpa_private_address}`` for each of ``hosts`` (``''`` where unset): what rpa_topology,
    rpa_peer_rules and rpa_hosts_in_networks take. Values are passed as they are; their checks name a bad one."""
    found = {}
    for host in hosts or []:
        variables = hostvars[host]
        found[host] = variables["rpa_private_address"] if "rpa_private_address" in variables else ""
    return found


def rpa_hosts_in_networks(addresses: dict, networks: list) -> list[str]:
    """The hosts whose address lies in one of ``networks`` (CIDR), sorted. Unparsable values are skipped:
    the checks that own them name them."""
    parsed = []
    for net in networks or []:
        try:
            parsed.append(ipaddress.ip_network(str(net), strict=False))
        except ValueError:
            continue
    found = []
    for host, value in (addresses or {}).items():
        if not _address(value):
            continue
        address = ipaddress.ip_address(str(value).strip())
        if any(address.version == net.version and address in net for net in parsed):
            found.append(host)
    return sorted(found)


class FilterModule:
    def filters(self):
        return {"rpa_topology": rpa_topology, "rpa_peer_rules": rpa_peer_rules,
                "rpa_hosts_in_networks": rpa_hosts_in_networks,
                "rpa_peer_rules_problems": rpa_peer_rules_problems, "rpa_private_addresses": rpa_private_addresses,
                "rpa_monitoring_targets": rpa_monitoring_targets, "rpa_hostport": rpa_hostport}
