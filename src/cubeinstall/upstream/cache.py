"""The content-addressed cache of upstream files.

Layout under the root (``$CUBEINSTALL_CACHE`` or ``~/.cache/cubeinstall``)::

    upstream/sha256/<digest>        a verified file, named by the sha256 of its bytes
    upstream/partial/<digest>.part  an interrupted download (resumed with HTTP Range)

A file enters ``sha256/`` only after its bytes hashed to its name, by an atomic rename,
and is hashed again whenever it is read: a changed or damaged file is never used.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from cubeinstall.core.errors import CubeError
from cubeinstall.upstream.catalog import UpstreamFile

CACHE_ENV = "CUBEINSTALL_CACHE"
FETCH_HINT = ("run `cubeinstall bundle fetch` (or, on a machine without network, "
              "`cubeinstall bundle load FILE` with a bundle made by `cubeinstall bundle create`)")


class NotFetched(CubeError):
    """Upstream files a stage needs are not in the cache."""

    def __init__(self, missing: Iterable[UpstreamFile]):
        labels = sorted(item.label for item in missing)
        super().__init__("upstream files not in the local cache: " + "; ".join(labels),
                         hint=FETCH_HINT)
        self.missing = labels


class ChecksumMismatch(CubeError):
    """Bytes whose sha256 is not the pinned one: refused, never stored nor applied."""

    def __init__(self, what: str, expected: str, actual: str, source: str, hint: str | None = None):
        super().__init__(
            f"{what}: sha256 mismatch (expected {expected}, got {actual}) from {source}; "
            "the file was refused and nothing was applied",
            hint=hint or "the file changed at its source or in transit: check the mirror "
                         "(upstream.base_url) or the bundle; a site that really wants another "
                         "file sets its version and sha256 in components.<stage>")


def default_root() -> Path:
    base = os.environ.get(CACHE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "cubeinstall"
    return root / "upstream"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Cache:
    def __init__(self, root: Path | None = None):
        self.root = root or default_root()

    def path(self, digest: str) -> Path:
        return self.root / "sha256" / digest

    def partial(self, digest: str) -> Path:
        return self.root / "partial" / f"{digest}.part"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def missing(self, files: Iterable[UpstreamFile]) -> list[UpstreamFile]:
        return [item for item in files if not self.has(item.sha256)]

    def read(self, item: UpstreamFile) -> bytes:
        """The verified bytes of a cached file; NotFetched or ChecksumMismatch otherwise."""
        path = self.path(item.sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFetched([item]) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != item.sha256:
            raise ChecksumMismatch(item.label, item.sha256, actual, f"the cache ({path})",
                                   hint="the cached copy was damaged: `cubeinstall bundle fetch` "
                                        "(or `bundle load`) replaces it")
        return data

    def adopt(self, source: Path, expected: str, what: str, origin: str) -> Path:
        """Move a finished download or extracted file into place if its sha256 is right."""
        actual = sha256_of(source)
        if actual != expected:
            source.unlink(missing_ok=True)
            raise ChecksumMismatch(what, expected, actual, origin)
        target = self.path(expected)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return target

    def scratch(self) -> Path:
        """A directory for files on their way in (same file system: renames are atomic)."""
        path = self.root / "partial"
        path.mkdir(parents=True, exist_ok=True)
        return path
