"""The run journal: what each stage last did on each cluster, when, and from what inputs.

One JSON document per site, written atomically to a local file after every
stage (and mirrored to a ConfigMap in the platform cluster when it is reachable, so
a second operator machine sees the same history: one copy for the whole site, every
cluster's records in it). Records are keyed by stage for node and registry stages
and the platform cluster (as before sites had several clusters), ``stage@cluster``
for the others (run/targets.py). ``all`` reads it to skip
stages whose inputs are unchanged and that finished ok, and to resume after an
interruption: a stage recorded ``running`` never finished and runs again.

The cluster copy gets a stage's ``running`` record before the stage changes
anything; its end is copied with the next start or when the run ends (``flush``):
one write per stage, not two. A copy that lags says ``running`` for a finished
stage, which only makes a reader run it again, never skip it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from cubeinstall import __version__
from cubeinstall.core.files import write_atomically

SCHEMA = 1


@dataclass
class StageRecord:
    stage: str
    status: str  # running | ok | failed
    fingerprint: str
    started: float
    finished: float | None = None
    changes: int = 0
    message: str = ""
    cluster: str | None = None  # None: a node or registry stage, or a journal of before clusters


@dataclass
class Journal:
    site: str
    path: Path
    stages: dict[str, StageRecord] = field(default_factory=dict)
    mirror: Callable[[str], None] | None = None  # receives the JSON text
    # what the latest runs found in the clusters before rendering (run/found.py remember):
    # plain `status` renders with it, as the runs did
    found: dict = field(default_factory=dict)
    _unmirrored: bool = field(default=False, repr=False, compare=False)  # the copy lags
    # stages running at once record their start and end from their own threads
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @classmethod
    def load(cls, site: str, directory: Path | None = None) -> "Journal":
        path = (directory or state_dir()) / f"{site}.journal.json"
        journal = cls(site=site, path=path)
        if path.exists():
            document = json.loads(path.read_text(encoding="utf-8"))
            journal.stages = records(document)
            journal.found = document.get("found") or {}
        return journal

    def started(self, key: str, fingerprint: str, cluster: str | None = None) -> None:
        stage = key.partition("@")[0]  # the key is the stage, or stage@cluster
        with self._lock:
            self.stages[key] = StageRecord(stage, "running", fingerprint, time.time(),
                                           cluster=cluster)
            self.save()

    def finished(self, key: str, ok: bool, changes: int = 0, message: str = "") -> None:
        with self._lock:
            record = self.stages[key]
            record.status = "ok" if ok else "failed"
            record.finished = time.time()
            record.changes = changes
            record.message = message
            self.save(mirror=False)

    def forget(self, key: str) -> None:
        with self._lock:
            if self.stages.pop(key, None) is not None:
                self.save()

    def is_current(self, key: str, fingerprint: str) -> bool:
        record = self.stages.get(key)
        return bool(record and record.status == "ok" and record.fingerprint == fingerprint)

    def to_json(self) -> str:
        document = {"schema": SCHEMA, "site": self.site, "cubeinstall": __version__,
                    "stages": {name: asdict(record) for name, record in sorted(self.stages.items())}}
        if self.found:
            document["found"] = self.found
        return json.dumps(document, indent=2, sort_keys=True)

    def save(self, mirror: bool = True) -> None:
        """Write the file; copy it to the cluster too unless ``mirror`` is False (then
        ``flush`` or the next save does)."""
        with self._lock:  # one writer at a time: the file and its copy see every record
            text = self.to_json()
            write_atomically(self.path, text)
            self._unmirrored = self.mirror is not None and not mirror
            if self.mirror is not None and mirror:
                self.mirror(text)

    def flush(self) -> None:
        """Bring the cluster copy up to date with the file (at the end of a run)."""
        with self._lock:
            if self._unmirrored and self.mirror is not None:
                self._unmirrored = False
                self.mirror(self.to_json())


def records(document: dict) -> dict[str, StageRecord]:
    return {name: StageRecord(**record) for name, record in document.get("stages", {}).items()}


def state_dir() -> Path:
    override = os.environ.get("CUBEINSTALL_STATE_DIR")
    if override:
        return Path(override)
    root = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return root / "cubeinstall"
