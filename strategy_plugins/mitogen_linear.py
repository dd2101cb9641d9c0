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

It also lists the installed collections once. Mitogen's planner lists them
(ansible.collections.list.list_collection_dirs) for every collection module
a worker runs, and the listing imports every collection package and parses
its meta/runtime.yml: with the `ansible` package's ninety collections that
was 89 YAML files, about 0.1 CPU-s, in each such worker - 5 of a full
idempotent site.yml's 28 worker CPU-s in a profile. The list cannot change
during a run; the main process makes it once and every worker uses it. That
run's controller CPU went from 22.8 to 18.2 s (user+sys, the mean of two runs
each on the converged demo), its wall time from 29.4 to 24.9 s.

The stock strategy comes back with ANSIBLE_STRATEGY=linear (README,
"Mitogen"); everything works with either.
"""

from __future__ import annotations

import ansible.collections.list
import ansible_mitogen.planner
from ansible.plugins.loader import action_loader, filter_loader, lookup_loader, test_loader
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as _MitogenLinear

_LOADED = []


def load_plugins_once() -> None:
    """Every filter, test, action and lookup plugin, and the list of collections, in this (the main) process, once per run."""
    if _LOADED:
        return
    for loader in (filter_loader, test_loader):
        for _plugin in loader.all():
            pass
    for loader in (action_loader, lookup_loader):
        for _plugin in loader.all(class_only=True):
            pass
    collection_dirs = frozenset(path.decode("utf-8") for path in ansible.collections.list.list_collection_dirs())

    def load_collections(invocation) -> None:
        # What ansible_mitogen.planner._load_collections adds, from the list made above.
        invocation._extra_sys_paths.update(collection_dirs)

    ansible_mitogen.planner._load_collections = load_collections
    _LOADED.append(True)


class StrategyModule(_MitogenLinear):
    def run(self, iterator, play_context):
        load_plugins_once()
        return super().run(iterator, play_context)
