"""Controller side of the secret rotation: read the vault, draw new values, write them back.

An action plugin, not a module: it runs on the controller, where the vault
secrets given to ansible-playbook (--vault-id, ANSIBLE_VAULT_IDENTITY_LIST)
are; a module on the server never sees them.

state=pending   read the current values of `secrets` (a list of {name,
                length, alphabet, value}) from the vault file and draw a
                pending value for each (by policy, or the supplied value).
                Returns current and pending values - always censored (the
                result is no_log whatever the task says).
state=finish    write `values` (and each of `previous` as <name>_previous)
                into the vault file, re-encrypted with the vault id it had, atomically (temporary file, fsync,
                rename; mode kept), check the written file decrypts to what
                was meant, and record rotation dates in `meta_path` (not
                secret). Returns the names rotated, never the values.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml
from ansible.errors import AnsibleActionFail
from ansible.parsing.vault import VaultLib, match_secrets
from ansible.plugins.action import ActionBase

from ansible_collections.rpa.engine.plugins.module_utils import rpa_vault


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("state", "path", "secrets", "values", "previous", "meta_path", "grace"))

    def _vault(self) -> VaultLib:
        vault = getattr(self._loader, "_vault", None)
        if vault is None or not vault.secrets:
            raise AnsibleActionFail("no vault secret given: run with --vault-id (or ANSIBLE_VAULT_IDENTITY_LIST)")
        return vault

    def _read(self, path: Path) -> tuple[str, str | None, bytes]:
        if not path.is_file():
            raise AnsibleActionFail(f"vault file {path} does not exist")
        raw = path.read_bytes()
        try:
            vault_id = rpa_vault.vault_id_of(raw.decode("ascii", "replace"))
        except ValueError:
            raise AnsibleActionFail(f"{path} is not encrypted with ansible-vault; encrypt it before rotating") from None
        plain = self._vault().decrypt(raw).decode()
        return plain, vault_id, raw

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        state = args.get("state")
        path = Path(args.get("path") or "")
        if state == "pending":
            plain, vault_id, _ = self._read(path)
            present = yaml.safe_load(plain) or {}
            current, pending = {}, {}
            for policy in args.get("secrets") or []:
                name = policy.get("name")
                if name not in present:
                    raise AnsibleActionFail(f"{name} is not in {path}: nothing to rotate")
                current[name] = str(present[name])
                try:
                    if policy.get("value"):
                        pending[name] = rpa_vault.check_supplied(policy["value"], int(policy.get("min_length", 16)))
                    else:
                        pending[name] = rpa_vault.generate(policy.get("length", 48), policy.get("alphabet", "alnum"))
                except ValueError as exc:
                    raise AnsibleActionFail(f"{name}: {exc}") from None
            result.update(current=current, pending=pending, vault_id=vault_id, changed=False,
                          _ansible_no_log=True)
            return result
        if state == "finish":
            new = dict(args.get("values") or {})
            if not new:
                raise AnsibleActionFail("finish needs values")
            # The previous values stay in the vault for the overlap (site.yml passes
            # them on while rotation.yml says they are within their grace window).
            values = dict(new, **{f"{k}_previous": v for k, v in (args.get("previous") or {}).items()})
            plain, vault_id, raw = self._read(path)
            vault = self._vault()
            ids = [vault_id] if vault_id else [s[0] for s in vault.secrets]
            found = match_secrets(vault.secrets, ids)
            if not found:
                raise AnsibleActionFail(f"no vault secret for vault id {vault_id!r} of {path}")
            try:
                new_plain = rpa_vault.set_values(plain, values)
            except ValueError as exc:
                raise AnsibleActionFail(str(exc)) from None
            secret = found[0][1]
            data = VaultLib(vault.secrets).encrypt(new_plain.encode(), secret=secret, vault_id=vault_id)
            mode = os.stat(path).st_mode & 0o777
            meta_path = Path(args["meta_path"]) if args.get("meta_path") else None
            meta_text = self._meta_text(meta_path, args.get("grace") or {}, sorted(new)) if meta_path else None
            # One transaction: if anything after the vault's rename fails, the old
            # vault comes back, so the rescue's rollback and the vault agree.
            rpa_vault.atomic_write(path, data, mode & 0o700 or 0o600)
            try:
                check = yaml.safe_load(vault.decrypt(path.read_bytes()).decode()) or {}
                if any(str(check.get(k)) != str(v) for k, v in values.items()):
                    raise AnsibleActionFail(f"{path} did not read back as written; the previous file is restored")
                if meta_path:
                    rpa_vault.atomic_write(meta_path, meta_text.encode(), 0o644)
            except BaseException:
                rpa_vault.atomic_write(path, raw, mode)
                raise
            result.update(changed=True, rotated=sorted(new), vault_id=vault_id)
            return result
        raise AnsibleActionFail("state must be pending or finish")

    @staticmethod
    def _meta_text(meta_path: Path, grace: dict, names: list[str]) -> str:
        # Plain str/int: yaml.safe_dump refuses Ansible's tagged strings.
        grace = {str(k): int(v) for k, v in grace.items()}
        meta = {}
        if meta_path.exists():
            meta = (yaml.safe_load(meta_path.read_text()) or {}).get("rpa_secret_rotation") or {}
        now = int(time.time())
        for name in map(str, names):
            entry = {"rotated_at": now}
            if name in grace:
                entry["previous_until"] = now + grace[name]
            meta[name] = entry
        return ("---\n# Written by playbooks/rotate-secrets.yml: when each vault secret was rotated and until\n"
                "# when its previous value is still accepted (epoch seconds). Not secret.\n"
                + yaml.safe_dump({"rpa_secret_rotation": meta}, default_flow_style=False, sort_keys=True))
