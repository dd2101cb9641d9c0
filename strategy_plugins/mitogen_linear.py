"""Mitogen's linear strategy (https://mitogen.networkgenomics.com/ansible_detailed.html), the default here.

Mitogen keeps one Python interpreter per host alive over the SSH connection
and runs modules in it, instead of a new SSH session and interpreter for
every task: the same tasks, the same results, about half the wall time of a
no-op site.yml run (bench/noop_rerun). The implementation is the pinned
`mitogen` package (requirements.txt); this file makes the strategy findable
from the repository (ansible.cfg's strategy_plugins) wherever the venv lives,
and loads Ansible's Jinja filters and tests, action and lookup plugins once,
in the controller's main process, before the first task.

Why the loading: Ansible forks a worker process for every task on every
host, and a worker that finds a plugin loader's cache empty fills it again -
its filters and tests when it compiles the task's first template - only to
throw it away when it exits. Loaded before the forks, every worker inherits
them. Measured on a converged demo server (README, "Mitogen"): a tag run
that does only the preflight costs the controller about 40% less CPU (9.2 to
5.6 CPU-s), a full idempotent site.yml about 8% less; the tasks and their
results are the same.

The stock strategy comes back with ANSIBLE_STRATEGY=linear (README,
"Mitogen"); everything works with either.
"""

from __future__ import annotations

from ansible.plugins.loader import action_loader, filter_loader, lookup_loader, test_loader
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as _MitogenLinear

_LOADED = []


def load_plugins_once() -> None:
    """Every filter, test, action and lookup plugin in this (the main) process, once per run."""
    if _LOADED:
        return
    for loader in (filter_loader, test_loader):
        for _plugin in loader.all():
            pass
    for loader in (action_loader, lookup_loader):
        for _plugin in loader.all(class_only=True):
            pass
    _LOADED.append(True)


class StrategyModule(_MitogenLinear):
    def run(self, iterator, play_context):
        load_plugins_once()
        return super().run(iterator, play_context)
