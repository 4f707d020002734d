"""One run per site at a time.

Two locks, taken in this order: a local lock file (two shells on the same
machine), then a Kubernetes Lease in the platform cluster (two machines). The
second run is refused with the holder's name, never queued: installers that
wait silently look hung.
"""

from __future__ import annotations

import fcntl
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cubeinstall.core.locking import SiteLocked, holder_identity
from cubeinstall.run.journal import state_dir


@contextmanager
def local_lock(site: str, directory: Path | None = None) -> Iterator[None]:
    path = (directory or state_dir()) / f"{site}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            raise SiteLocked(f"site {site} is being changed by another run ({holder})",
                             hint="wait for it to finish; if it died, this lock is released "
                                  "with its process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"holder": holder_identity(), "since": time.time()}))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


def _describe(text: str) -> str:
    try:
        record = json.loads(text)
    except ValueError:
        return "holder unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("since", 0)))
    return f"held by {record.get('holder', 'unknown')} since {since}"
