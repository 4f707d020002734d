"""Who holds a site's lock: shared by the local lock file and the cluster Lease."""

from __future__ import annotations

import getpass
import os
import re

from cubeinstall.core.errors import CubeError


class SiteLocked(CubeError):
    pass


def holder_identity() -> str:
    return f"{getpass.getuser()}@{os.uname().nodename} pid {os.getpid()}"


def holder_is_gone(holder: str) -> bool:
    """True when ``holder`` (a holder_identity) was a process of THIS machine that no longer
    exists: a run killed with SIGKILL or by a crash left its Lease behind, and its re-run
    must not wait for the Lease to expire. A holder on another machine, or whose pid is
    alive (or reused), is never declared gone."""
    match = re.fullmatch(r"[^@\s]+@(?P<host>\S+) pid (?P<pid>\d+)", holder or "")
    if not match or match["host"] != os.uname().nodename:
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
