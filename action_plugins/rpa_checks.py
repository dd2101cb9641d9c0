"""Controller side of a role's preflight: many checks in one task, every failure reported at once.

Each check is ``{that: <bool>, msg: <str>}``: Ansible templates the arguments
before the plugin runs, so ``that`` arrives as the verdict of a Jinja test
(``"{{ common_ssh_port is rpa_port }}"``) and ``msg`` as the text that names
the variable and the fix. One task instead of one ``assert`` per check keeps
a no-op run cheap (every task costs a worker fork, skipped or not), and an
operator with three bad values learns of all three in one run.

The result carries the messages of the failed checks only: never the
arguments, so a check on a secret (its length, its characters) prints
nothing of the secret.
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def failures(checks) -> list[str]:
    """The messages of the checks that failed, in order; a malformed check is a bug in the role."""
    if not isinstance(checks, list) or not checks:
        raise ValueError("checks must be a non-empty list of {that, msg}")
    failed = []
    for index, check in enumerate(checks):
        if not isinstance(check, dict) or set(check) - {"that", "msg"} or "that" not in check or "msg" not in check:
            raise ValueError(f"checks[{index}] must be a mapping with exactly the keys that and msg")
        verdict = check["that"]
        if not isinstance(verdict, bool):
            raise ValueError(f"checks[{index}].that must template to true or false, got {type(verdict).__name__}"
                             f" (message: {str(check['msg'])[:120]})")
        if not verdict:
            failed.append(" ".join(str(check["msg"]).split()))
    return failed


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("checks",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        try:
            failed = failures(self._task.args.get("checks"))
        except ValueError as exc:
            raise AnsibleActionFail(f"rpa_checks: {exc}") from None
        result["changed"] = False
        result["checked"] = len(self._task.args["checks"])
        if failed:
            result["failed"] = True
            result["failed_checks"] = failed
            result["msg"] = "\n".join(failed)
        else:
            result["msg"] = f"All {result['checked']} checks passed."
        return result
