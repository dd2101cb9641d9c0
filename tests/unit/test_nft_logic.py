"""rpa_nft: the live firewall table against the one its file makes (nftables 1.0.6's real listings)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.rpa.engine.plugins.module_utils import rpa_nft  # noqa: E402

FIXTURES = ROOT / "tests" / "unit" / "fixtures"
FROM_FILE = (FIXTURES / "nft_1.0.6_table_from_file.txt").read_text()
LIVE = (FIXTURES / "nft_1.0.6_table_live_with_elements.txt").read_text()
DRIFTED = (FIXTURES / "nft_1.0.6_table_live_drifted.txt").read_text()


def test_sources_the_rate_limiter_learned_are_not_drift():
    assert "elements = { 192.0.2.7" in LIVE
    assert rpa_nft.drift(LIVE, FROM_FILE) == []


def test_a_rule_added_and_one_removed_by_hand_are_both_named():
    lines = rpa_nft.drift(DRIFTED, FROM_FILE)
    assert "+\t\ttcp dport 6666 accept" in lines
    assert "-\t\tip saddr { 10.0.0.12, 10.0.0.31 } udp dport { 4789, 7946 } accept" in lines
    assert not [line for line in lines if "elements" in line]


def test_a_missing_table_is_drift_and_an_empty_file_table_too():
    assert rpa_nft.drift("", FROM_FILE)
    assert rpa_nft.drift(LIVE, "")


def test_elements_of_a_static_set_are_configuration():
    static = "table inet t {\n\tset allowed {\n\t\ttype ipv4_addr\n\t\telements = { 192.0.2.1 }\n\t}\n}\n"
    assert rpa_nft.drift(static.replace("192.0.2.1", "192.0.2.2"), static)


def test_elements_wrapped_over_several_lines_are_all_left_out():
    wrapped = LIVE.replace("elements = { 192.0.2.7, 198.51.100.9 }",
                           "elements = { 192.0.2.7, 198.51.100.9,\n\t\t\t     203.0.113.5 }")
    assert rpa_nft.drift(wrapped, FROM_FILE) == []
