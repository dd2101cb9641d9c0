"""Mitogen's linear strategy (https://mitogen.networkgenomics.com/ansible_detailed.html), the default here.

Mitogen keeps one Python interpreter per host alive over the SSH connection
and runs modules in it, instead of a new SSH session and interpreter for
every task: the same tasks, the same results, about half the wall time of a
no-op site.yml run (bench/noop_rerun). This file only makes the strategy
findable from the repository (ansible.cfg's strategy_plugins) wherever the
venv lives; the implementation is the pinned `mitogen` package
(requirements.txt).

The stock strategy comes back with ANSIBLE_STRATEGY=linear (README,
"Mitogen"); everything works with either.
"""

from __future__ import annotations

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401
