"""Disaster recovery (issue 17), last of all because it kills the server under test: rows written through
the app, the server killed outright, a fresh bare server, and the one command (playbooks/recover.yml).
bench/dr is the drill; this runs it and asserts the RPO (<= 60 s) and that the stack serves its data."""

from __future__ import annotations

from conftest import ROOT, bench, inventory_path, run_playbook

DR_NAME = "rpa-recovered"


def test_a_killed_server_is_rebuilt_by_one_command_with_its_data(server):
    def run_recover(inventory, *extra):
        proc, _ = run_playbook("playbooks/recover.yml", *extra, check_json=False, human=True, inventory=inventory)
        return proc.returncode, proc.stdout + proc.stderr

    figures = bench("dr").drill(source=server["name"], inventory=inventory_path(), name=DR_NAME, ssh_port=2231,
                                http_port=8891, port=8451, run_recover=run_recover,
                                ssh_key=ROOT / ".testbed" / "ssh" / "id_ed25519", write_seconds=8)
    assert figures["ok"], figures["output"]
    assert figures["archived_before_kill"], "the first write's WAL segment was not archived within 90 s of writing"
    print(f"\nDR drill: {figures['acked']} writes acknowledged before the kill, {figures['present']} recovered, "
          f"RPO {figures['rpo']:.1f} s, RTO {figures['rto']:.1f} s")
    assert figures["acked"] >= 20, figures
    assert not figures["gaps"], f"acknowledged writes missing before the newest recovered one: {figures['gaps']}"
    assert figures["rpo"] is not None and figures["rpo"] <= 60, figures
