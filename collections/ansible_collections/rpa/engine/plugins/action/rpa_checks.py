"""Controller side of a role's preflight: many checks in one task, every failure reported at once.

Each check is ``{that: <bool>, msg: <str>}``: Ansible templates the arguments
before the plugin runs, so ``that`` arrives as the verdict of a Jinja test
(``"{{ common_ssh_port is rpa.engine.rpa_port }}"``) and ``msg`` as the text that names
the variable and the fix. One task instead of one ``assert`` per check keeps
a no-op run cheap (every task costs a worker fork, skipped or not), and an
operator with three bad values learns of all three in one run.

``catalogue_owner: ROLE`` adds the strength checks of the secrets the catalogue
(catalogue/secrets.yml, through lookup('rpa.engine.rpa_catalogue')) says ROLE owns: each
one's variable must hold at least its min_length characters, fit a Compose
.env literally, and not be the examples' placeholder.

The result carries the messages of the failed checks only: never the
arguments, so a check on a secret (its length, its characters) prints
nothing of the secret.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader

_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")


def failures(checks) -> list:
    """The messages of the checks that failed, in order; a malformed check is a bug in the role."""
    if not isinstance(checks, list):
        raise ValueError("checks must be a list of {that, msg}")
    failed = []
    for index, check in enumerate(checks):
        if not isinstance(check, dict) or set(check) - {"that", "msg"} or "that" not in check or "msg" not in check:
            raise ValueError(f"checks[{index}] must be a mapping with exactly the keys that and msg")
        verdict = check["that"]
        if not isinstance(verdict, bool):
            raise ValueError(f"checks[{index}].that must template to true or false, got {type(verdict).__name__}"
                             f" (message: {str(check['msg'])[:120]})")
        if not verdict:
            failed.append(check["msg"])
    return failed


def weak_secret(entry: dict, value) -> str | None:
    """Why value cannot be the catalogue entry's secret, or None. Never says anything of the value."""
    if entry.get("optional") and value in ("", None):
        return None
    printable = entry.get("printable", False)
    ok = (isinstance(value, str) and len(value) >= entry["min_length"] and "'" not in value
          and "\n" not in value and "\r" not in value and "CHANGE-ME" not in value
          and (not printable or bool(_PRINTABLE.match(value))))
    if ok:
        return None
    chars = "printable ASCII characters without spaces or" if printable else "characters, without"
    return (f"{entry['variable']} must be at least {entry['min_length']} {chars} a single quote or a newline, "
            f"and not the example placeholder{' (or empty: ' + entry['optional'] + ')' if entry.get('optional') else ''}."
            f" Set {entry['vault_key']} in your vault (e.g. `openssl rand -hex 24`).")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("checks", "catalogue_owner", "warnings"))
    _requires_connection = False

    @classmethod
    def finalize_task_arg(cls, name, value, templar, context):
        """Template each check's verdict now and its message only if it failed (in run()).

        Most checks pass on most runs, and their messages - the longest
        templates of a preflight - are then never read. (ansible-core's
        experimental per-argument hook; without it the messages come
        templated, which gives the same results a little slower.)
        """
        if name not in ("checks", "warnings") or not isinstance(value, list):
            return super().finalize_task_arg(name, value, templar, context)
        return [dict(check, that=templar.template(check["that"]))
                if isinstance(check, dict) and "that" in check else templar.template(check)
                for check in value]

    def _secret_failures(self, role: str, task_vars: dict) -> list[str]:
        try:
            catalogue = lookup_loader.get("rpa.engine.rpa_catalogue", loader=self._loader, templar=self._templar).run([])[0]
        except AnsibleError as exc:
            raise AnsibleActionFail(f"rpa_checks: {exc}") from None
        failed = []
        for entry in catalogue.values():
            if entry["owner"] != role:
                continue
            if entry["variable"] not in task_vars:
                failed.append(f"{entry['variable']} is not set. Set {entry['vault_key']} in your vault and map it in "
                              f"group_vars ({entry['variable']}: \"{{{{ {entry['vault_key']} }}}}\").")
                continue
            problem = weak_secret(entry, self._templar.template(task_vars[entry["variable"]]))
            if problem:
                failed.append(problem)
        return failed

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        if not args.get("checks") and not args.get("catalogue_owner"):
            raise AnsibleActionFail("rpa_checks: give checks, catalogue_owner, or both")
        try:
            failed = [" ".join(str(self._templar.template(msg)).split()) for msg in failures(args.get("checks") or [])]
        except ValueError as exc:
            raise AnsibleActionFail(f"rpa_checks: {exc}") from None
        checked = len(args.get("checks") or [])
        if args.get("catalogue_owner"):
            secret_failures = self._secret_failures(str(args["catalogue_owner"]), task_vars or {})
            failed = secret_failures + failed
            checked += 1
        try:
            # A safe default the operator should still hear of (no off-site copy): Ansible's own
            # [WARNING] lines, in every run's output, and nothing fails.
            warned = [" ".join(str(self._templar.template(msg)).split()) for msg in failures(args.get("warnings") or [])]
        except ValueError as exc:
            raise AnsibleActionFail(f"rpa_checks: warnings: {exc}") from None
        if warned:
            result["warnings"] = warned
        result["changed"] = False
        result["checked"] = checked
        if failed:
            result["failed"] = True
            result["failed_checks"] = failed
            result["msg"] = "\n".join(failed)
        else:
            result["msg"] = f"All {checked} checks passed."
        return result
