"""The disaster-recovery drill's first half (issue 17; conftest's `disaster` fixture, bench/dr), first of all:
rows written through Caddy until a whole archive cycle is off-site, then the server under test killed outright
(SIGKILL of its container), its repository copied for the new server, and the server started again.

The one command then rebuilds a fresh bare server from the copy in the background, and every module after
this one runs on a server that has crashed once. test_zz_disaster_recovery.py asserts the recovery last of
all; in Molecule's verify the recovered server also runs the modules of conftest.RECOVERED_LANE meanwhile.
What this module checks is the crash itself: the killed server comes back by itself, every service healthy,
with every write it acknowledged before the kill."""

from __future__ import annotations

from conftest import cname


def test_the_drill_wrote_through_a_whole_archive_cycle_before_the_kill(disaster):
    killed = disaster["killed"]
    assert killed["archived"], "the first write's WAL segment was not archived within 90 s of writing"
    assert len(killed["acked"]) >= 20, f"{len(killed['acked'])} writes acknowledged before the kill"


def test_the_killed_server_comes_back_healthy_within_180_s(disaster):
    took, states = disaster["back"]
    assert len(states) >= 10 and set(states.values()) == {"healthy"}, f"after {took:.0f} s: {states}"
    print(f"\nkilled server healthy again {took:.1f} s after its start")


def test_every_write_acknowledged_before_the_kill_survives_it(host, disaster):
    """Committed is durable: the crash loses no acknowledged row on the server itself (synchronous commit)."""
    killed = disaster["killed"]
    ids = {i for i, _ in killed["acked"]}
    present = {int(i) for i in host.check_output(
        f"docker exec {cname('postgres')} psql -X -tAq -U postgres -d rpa_engine "
        f"-c \"select id from refapp_items where name like '{killed['prefix']}-%'\"").split()}
    assert ids <= present, f"acknowledged but gone after the crash: {sorted(ids - present)[:20]}"
