"""The environment contract, read once; a missing variable stops the service at start.

This is how the reference app proves the stack supplies the contract: if the
app role forgot a variable, the service would not come up and the gate fails.
"""

import os
import sys


def required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"refapp: {name} is not set; the app role must provide it")
    return value


def optional(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def database_url() -> str:
    return required("DATABASE_URL")


def redis_url() -> str:
    return required("REDIS_URL")
