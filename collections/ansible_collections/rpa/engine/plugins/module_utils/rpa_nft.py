# -*- coding: utf-8 -*-
"""Pure logic of the rpa_nft_table module: does the live nftables table still say what its file says?

Both sides are `nft -s list table FAMILY NAME` listings (stateless: no counter values): the live table's,
and the one the file makes when loaded into a throwaway network namespace - so nft itself writes both in
its own normal form, and a rule added, removed or changed by hand shows as a differing line. The members a
dynamic set learns from traffic (the SSH rate limiter's sources) are state, not configuration: they are
left out. Unit-tested with nftables' real listings (tests/unit/fixtures/nft_*).
"""

from __future__ import annotations

import difflib


def normalize(listing):
    """The listing's lines without the elements of dynamic sets, trailing blanks or empty lines."""
    out, in_set, dynamic, skipping = [], False, False, False
    for raw in (listing or "").splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if skipping:
            if "}" in stripped:
                skipping = False
            continue
        if not stripped:
            continue
        if stripped.startswith("set ") and stripped.endswith("{"):
            in_set, dynamic = True, False
        elif in_set and stripped.startswith("flags ") and "dynamic" in stripped:
            dynamic = True
        elif in_set and stripped == "}":
            in_set = False
        elif in_set and dynamic and stripped.startswith("elements = {"):
            skipping = "}" not in stripped
            continue
        out.append(line)
    return out


def drift(live, expected, label="live table"):
    """Unified diff lines from the file's table to the live one; empty when they say the same."""
    return list(difflib.unified_diff(normalize(expected), normalize(live), "from the file", label, lineterm="", n=1))
