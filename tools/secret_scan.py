#!/usr/bin/env python3
"""Fail when git tracks a secret: an unencrypted vault, a private key, a token, a literal password.

    python3 tools/secret_scan.py            scan every file git tracks (part of `make lint`)
    python3 tools/secret_scan.py PATH...    scan these files

Rules:
  vault       a file named vault*.yml / vault*.yaml (not *.example) that does not start
              with $ANSIBLE_VAULT;
  private-key a PEM/OpenSSH private key block
  cloud-key   AWS access key ids, GitHub and Slack tokens
  password    a YAML/INI/env key named like a secret (password, secret, token, api_key,
              private_key) with a literal value: not empty, not a Jinja expression, not a
              vault_* lookup, not an obvious placeholder (CHANGE-ME, example, dummy)
  scram       a SCRAM-SHA-256 verifier (it allows an offline attack on the password)

A line that carries `secret-scan: allow` (with the reason) is skipped: for
published test vectors, say.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"change-?me|example|dummy|placeholder|not-the-password|wrong-password|<[^>]+>", re.I)
RULES = [
    ("private-key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("cloud-key", re.compile(r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|xox[baprs]-[A-Za-z0-9-]{10,})\b")),
    ("scram", re.compile(r"SCRAM-SHA-256\$\d+:[A-Za-z0-9+/]{16,}={0,2}\$[A-Za-z0-9+/]{40,}")),
]
SECRET_KEY = re.compile(
    r"""^\s*(?:-\s*)?["']?(?P<key>[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api_key|apikey|private_key)[A-Za-z0-9_]*)["']?"""
    r"""\s*[:=]\s*(?P<value>.*?)\s*$""", re.I)


def literal_secret(line: str) -> str | None:
    match = SECRET_KEY.match(line)
    if not match:
        return None
    value = match.group("value").split(" #")[0].strip().strip("\"'")
    if not value or value in {">-", "|", ">", "|-", "null", "~", "{}", "[]", "true", "false"}:
        return None
    if re.search(r"_(file|path|dir|encryption|length|policy|type|method|mode)$", match.group("key"), re.I):
        return None  # settings about a secret, not the secret
    if value.startswith("/"):
        return None  # a path
    if "{{" in value or "${" in value or value.startswith(("vault_", "$", "lookup(", "(")) or PLACEHOLDER.search(value):
        return None
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*(\(.*\))?", value) and not re.search(r"\d", value):
        return None  # another variable's or setting's name, not a value
    if len(value) < 8:
        return None
    return match.group("key")


def scan_text(path: str, text: str) -> list[str]:
    problems = []
    name = Path(path).name
    if re.fullmatch(r"vault[^/]*\.ya?ml", name) and not text.startswith("$ANSIBLE_VAULT;"):
        problems.append(f"{path}: vault file is not encrypted (ansible-vault encrypt {path})")
    code_like = Path(path).suffix in {".yml", ".yaml", ".ini", ".env", ".cfg", ".j2", ".conf", ".json", ".txt", ""}
    for number, line in enumerate(text.splitlines(), 1):
        if "secret-scan: allow" in line:
            continue
        for rule, pattern in RULES:
            if pattern.search(line):
                problems.append(f"{path}:{number}: {rule}")
        if code_like:
            key = literal_secret(line)
            if key:
                problems.append(f"{path}:{number}: password: literal value for {key}")
    return problems


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def main(argv: list[str]) -> int:
    paths = argv or tracked()
    problems = []
    for path in paths:
        full = ROOT / path if not Path(path).is_absolute() else Path(path)
        try:
            text = full.read_text()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        problems += scan_text(path, text)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"secret_scan: {len(problems)} finding(s); move secrets into an encrypted vault.yml", file=sys.stderr)
        return 1
    print(f"secret_scan: {len(paths)} files, no secret found")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
