#!/usr/bin/env python3
"""Fail when git tracks a secret: an unencrypted vault, a private key, a token, a literal password.

    python3 tools/secret_scan.py            scan every file git tracks (part of `make lint`)
    python3 tools/secret_scan.py PATH...    scan these files

Rules:
  vault       a file named vault*.yml / vault*.yaml (not *.example) that does not start
              with $ANSIBLE_VAULT;
  private-key a PEM/OpenSSH private key block
  cloud-key   AWS access key ids, GitHub and Slack tokens
  password    a key named like a secret (password, secret, token, api_key, private_key)
              given a literal value:
              - YAML, env, INI, templates, Markdown: any value that is not empty, not a
                Jinja expression or ${VAR}, not a vault_* reference and not a placeholder -
                a bare word is a literal there (`db_password: correcthorsebatterystaple`);
              - Python: a quoted string assigned or passed to such a name
                (`password = "..."`, `password="..."`, `"password": "..."`); an unquoted
                name is code, not a value;
  scram       a SCRAM-SHA-256 verifier (it allows an offline attack on the password)

What passes as a value: placeholders that start with CHANGE-ME (the examples' convention)
or are <in angle brackets>, and the fake values listed in ALLOWED below - an explicit list,
so a real secret that happens to contain a word like "example" is still caught. A line
that carries `secret-scan: allow` (with the reason) is skipped too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Values the tests and documents use on purpose: obviously fake, never a credential anywhere.
ALLOWED = frozenset({
    "not-the-password-0123456789",       # a wrong password the tests expect to be refused
    "wrong-password-0123456789",
    "not-the-deploy-token-at-all",
    "not-the-token",
    "changed-behind-our-back-0123456789",  # a drift the postgres role must set back
    "short-pass", "tooshort", "short", "short-previous",  # bad input the preflight must refuse
    "CHANGE-ME-0123456789",
    "correct horse battery staple",      # the password of published SCRAM / bcrypt test vectors
    "a$b{c}",                            # .env quoting in the compose unit tests
    "Fake-New-Key-0123456789abcdefghij", "Fake-Old-Key-0123456789",  # vault rewrite unit tests
})
PLACEHOLDER = re.compile(r"^(CHANGE-ME|<[^>]+>$)")
RULES = [
    ("private-key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("cloud-key", re.compile(r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|xox[baprs]-[A-Za-z0-9-]{10,})\b")),
    ("scram", re.compile(r"SCRAM-SHA-256\$\d+:[A-Za-z0-9+/]{16,}={0,2}\$[A-Za-z0-9+/]{40,}")),
]
_NAME = r"[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api_key|apikey|private_key)[A-Za-z0-9_]*"
# key: value / KEY=value / key = value, optionally quoted key, optionally a YAML list item.
SECRET_KEY = re.compile(rf"""^\s*(?:-\s*)?["']?(?P<key>{_NAME})["']?\s*[:=]\s*(?P<value>.*?)\s*$""", re.I)
# Python: name = "x", name="x" (keyword argument), "name": "x" (dict) - quoted values only.
PY_SECRET = re.compile(rf"""(?P<key>\b{_NAME})["']?\s*[:=]\s*(?P<quote>["'])(?P<value>[^"'\n]*)(?P=quote)""", re.I)
# Keys that name a setting about a secret, not the secret.
SETTING = re.compile(r"_(file|path|dir|encryption|length|policy|type|method|mode|name|key_path|overlap)$", re.I)
NOT_A_VALUE = {">-", "|", ">", "|-", "null", "~", "{}", "[]", "true", "false", "none", "..."}
MARKUP = {".md", ".rst"}
DATA = {".yml", ".yaml", ".ini", ".env", ".cfg", ".j2", ".conf", ".json", ".txt", ".toml", ""}


def is_placeholder(value: str) -> bool:
    return value in ALLOWED or bool(PLACEHOLDER.match(value))


def literal_value(key: str, value: str) -> bool:
    """Whether value, given to key, is a literal secret."""
    raw = value.split(" #")[0].strip()
    if raw.startswith(("&", "*")):
        return False  # a YAML anchor or alias: a reference, not a value
    if re.match(r"^[a-z_][a-z0-9_.]*\s*\|", raw):
        return False  # a variable through a Jinja filter, inside a template that spans lines
    value = raw.strip(",").strip("\"'`")
    if not value or value.lower() in NOT_A_VALUE or SETTING.search(key):
        return False
    if "{{" in value or "${" in value or value.startswith(("vault_", "$", "lookup(", "/")):
        return False
    return not is_placeholder(value)


def literal_secret(line: str) -> str | None:
    """The key given a literal secret on this YAML/env/INI/Markdown line, or None."""
    match = SECRET_KEY.match(line)
    if match and literal_value(match.group("key"), match.group("value")):
        return match.group("key")
    return None


def python_secrets(line: str) -> list[str]:
    """Keys given a quoted literal secret on this line of Python."""
    return [m.group("key") for m in PY_SECRET.finditer(line) if literal_value(m.group("key"), m.group("value"))]


def scan_text(path: str, text: str) -> list[str]:
    problems = []
    name, suffix = Path(path).name, Path(path).suffix
    if re.fullmatch(r"vault[^/]*\.ya?ml", name) and not text.startswith("$ANSIBLE_VAULT;"):
        problems.append(f"{path}: vault file is not encrypted (ansible-vault encrypt {path})")
    for number, line in enumerate(text.splitlines(), 1):
        if "secret-scan: allow" in line:
            continue
        for rule, pattern in RULES:
            if pattern.search(line):
                problems.append(f"{path}:{number}: {rule}")
        if suffix == ".py":
            keys = python_secrets(line)
        elif suffix in DATA or suffix in MARKUP:
            keys = [key for key in [literal_secret(line)] if key]
        else:
            keys = []
        problems += [f"{path}:{number}: password: literal value for {key}" for key in keys]
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
