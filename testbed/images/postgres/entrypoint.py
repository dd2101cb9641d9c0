"""Entrypoint of the test postgres image: the upstream image's contract, in short.

On an empty PGDATA: initdb with the superuser POSTGRES_USER/POSTGRES_PASSWORD
(or the content of POSTGRES_PASSWORD_FILE, read as the postgres user, as the
upstream image does; SCRAM), local trust, password logins from the network, then POSTGRES_DB.
Then exec the command as the postgres user. Started as that uid already (Compose
`user: "999:999"`, no capabilities), it does the same without gosu, as upstream does.
"""

import os
import subprocess
import sys
import tempfile

PGDATA = os.environ.get("PGDATA", "/var/lib/postgresql/data")
USER = os.environ.get("POSTGRES_USER", "postgres")
DB = os.environ.get("POSTGRES_DB", USER)


def as_postgres(cmd, **kw):
    # Started as root: drop to postgres; started as the postgres uid (Compose `user:`), already there.
    prefix = ["gosu", "postgres"] if os.getuid() == 0 else []
    return subprocess.run([*prefix, *cmd], check=True, **kw)


def init():
    password = os.environ.get("POSTGRES_PASSWORD")
    if not password and os.environ.get("POSTGRES_PASSWORD_FILE"):
        read = subprocess.run([*(["gosu", "postgres"] if os.getuid() == 0 else []), "cat",
                               os.environ["POSTGRES_PASSWORD_FILE"]], capture_output=True, text=True, check=False)
        if read.returncode != 0:
            sys.exit("POSTGRES_PASSWORD_FILE cannot be read by the postgres user: " + read.stderr.strip())
        password = read.stdout.strip()
    if not password:
        sys.exit("POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set on first start (the data directory is empty)")
    with tempfile.NamedTemporaryFile("w", dir="/tmp", delete=False) as pw:
        pw.write(password + "\n")
    if os.getuid() == 0:
        os.chown(pw.name, *pwd_ids())
    try:
        as_postgres(["initdb", "-D", PGDATA, "-U", USER, f"--pwfile={pw.name}",
                     "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8"])
    finally:
        os.unlink(pw.name)
    with open(os.path.join(PGDATA, "pg_hba.conf"), "a") as hba:
        hba.write("host all all all scram-sha-256\n")
    with open(os.path.join(PGDATA, "postgresql.auto.conf"), "a") as conf:
        conf.write("listen_addresses = '*'\n")
    if DB != "postgres":
        as_postgres(["postgres", "--single", "-D", PGDATA, "postgres"],
                    input=f'CREATE DATABASE "{DB}" OWNER "{USER}";\n'.encode(),
                    stdout=subprocess.DEVNULL)


def pwd_ids():
    import pwd
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def main():
    args = sys.argv[1:] or ["postgres"]
    if os.getuid() == 0:
        os.makedirs(PGDATA, exist_ok=True)
        uid, gid = pwd_ids()
        os.chown(PGDATA, uid, gid)
        os.chmod(PGDATA, 0o700)
        if not os.path.exists(os.path.join(PGDATA, "PG_VERSION")):
            init()
        if args[0] == "postgres":
            os.execvp("gosu", ["gosu", "postgres", *args])
    elif args[0] == "postgres" and not os.path.exists(os.path.join(PGDATA, "PG_VERSION")):
        # As upstream: a non-root start initialises a data directory that this uid owns.
        init()
    os.execvp(args[0], args)


main()
