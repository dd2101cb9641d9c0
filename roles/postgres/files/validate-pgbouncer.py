#!/usr/bin/env python3
"""Check a candidate pgbouncer.ini with PgBouncer itself (it has no check mode).

Starts the real PgBouncer image on the candidate in a throwaway container
without network. Still running after --seconds: PgBouncer accepted the file.
Exited: it refused it, and its own error message is printed. Used as
`template: validate:` so a broken file never replaces the live one.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--uid", required=True)
    parser.add_argument("--userlist", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("candidate")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="pgbouncer-check.")
    name = "pgbouncer-check-%d" % os.getpid()
    try:
        # The candidate holds no secret; the container user must read it.
        os.chmod(workdir, 0o755)
        ini = os.path.join(workdir, "pgbouncer.ini")
        shutil.copyfile(args.candidate, ini)
        os.chmod(ini, 0o644)
        mounts = ["-v", "%s:/etc/pgbouncer/pgbouncer.ini:ro" % ini]
        if os.path.exists(args.userlist):
            mounts += ["-v", "%s:/etc/pgbouncer/userlist.txt:ro" % args.userlist]
        started = docker("run", "-d", "--name", name, "--network", "none", "--user", "%s:%s" % (args.uid, args.uid),
                         "--entrypoint", "pgbouncer", *mounts, args.image, "/etc/pgbouncer/pgbouncer.ini")
        if started.returncode != 0:
            print("could not start PgBouncer to check the file: %s" % started.stderr.strip(), file=sys.stderr)
            return 2
        time.sleep(args.seconds)
        state = docker("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", name).stdout.split()
        if state and state[0] == "true":
            return 0
        logs = docker("logs", name)
        print("PgBouncer refused the configuration (exit code %s):\n%s%s"
              % (state[1] if len(state) > 1 else "?", logs.stdout, logs.stderr), file=sys.stderr)
        return 1
    finally:
        docker("rm", "-f", name)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
