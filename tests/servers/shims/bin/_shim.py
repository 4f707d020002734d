"""Shared by the Python recording shims of the sandboxed test nodes (tests/servers/sshd.py).

Each shim stands in for something that cannot run in a sandbox (systemd, the
docker daemon, a GPU, a CephFS cluster). It appends its argv, as one JSON line,
to CALLS, and keeps its state under STATE (the node's private /run).
"""

import json
import os
import sys

STATE = "/run/cubeinstall-shims"
CALLS = f"{STATE}/calls.log"


def record() -> list:
    argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    with open(CALLS, "a", encoding="utf-8") as log:
        log.write(json.dumps(argv) + "\n")
    return sys.argv[1:]


def state(name: str) -> str:
    return os.path.join(STATE, name)


def read_json(path: str, default):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default


def fail(message: str, code: int = 1):
    sys.stderr.write(message + "\n")
    sys.exit(code)
