"""Offline bundles: one tar.gz with the pinned upstream files, a lock file, and optionally images.

Layout of a bundle::

    bundle.lock.yaml                          format, cubeinstall version, and per file:
                                              component, version, file, url, sha256
    upstream/<component>/<version>/<path>     the files (also a valid mirror layout:
                                              unpacked and served, it is an upstream.base_url)
    images/...                                optional: a directory made by `images save`

``load`` reads only the members the lock names, checks every sha256 before anything
enters the cache, and writes by digest: a member name can never place a file elsewhere.
After it, installs read the cache and make no HTTP request.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import yaml

from cubeinstall import __version__
from cubeinstall.core.errors import CubeError
from cubeinstall.upstream.cache import Cache, ChecksumMismatch, NotFetched, sha256_of
from cubeinstall.upstream.catalog import UpstreamFile

if TYPE_CHECKING:
    from cubeinstall.core.output import Output

FORMAT = "cubeinstall-bundle/v1"
LOCK = "bundle.lock.yaml"
IMAGES = "images"


class BadBundle(CubeError):
    def __init__(self, path: Path, problem: str):
        super().__init__(f"bundle {path}: {problem}; nothing was loaded",
                         hint="make the bundle again with `cubeinstall bundle create` on a "
                              "machine that has run `cubeinstall bundle fetch`")


def member_name(item: UpstreamFile) -> str:
    return f"upstream/{item.component}/{item.version}/{item.path}"


def create(path: Path, files: Iterable[UpstreamFile], cache: Cache, out: "Output",
           images: Path | None = None) -> list[UpstreamFile]:
    """Write the bundle atomically; every file must be in the cache and intact."""
    chosen = list({item.sha256 + member_name(item): item for item in files}.values())
    missing = cache.missing(chosen)
    if missing:
        raise NotFetched(missing)
    lock = {"format": FORMAT, "cubeinstall": __version__,
            "files": [item.as_lock() for item in chosen]}
    if images is not None:
        from cubeinstall.images.offline import verify_directory

        lock["images"] = sorted(verify_directory(images))  # refuses a damaged directory
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with tarfile.open(temporary, "w:gz") as tar:
            _add_bytes(tar, LOCK, yaml.safe_dump(lock, sort_keys=False).encode())
            for item in chosen:
                _add_bytes(tar, member_name(item), cache.read(item))  # re-verified on the way
            if images is not None:
                tar.add(images, arcname=IMAGES)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    out.event("bundle-created", path=str(path), files=len(chosen), images=bool(images),
              bytes=path.stat().st_size,
              message=f"wrote {path}: {len(chosen)} upstream files"
                      + (f" and the images of {images}" if images else ""))
    return chosen


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def read_lock(tar: tarfile.TarFile, path: Path) -> dict:
    try:
        member = tar.getmember(LOCK)
        lock = yaml.safe_load(tar.extractfile(member).read())
    except (KeyError, AttributeError, yaml.YAMLError) as exc:
        raise BadBundle(path, f"no readable {LOCK} ({exc})") from None
    if not isinstance(lock, dict) or lock.get("format") != FORMAT:
        raise BadBundle(path, f"{LOCK} is not {FORMAT}")
    return lock


def load(path: Path, cache: Cache, out: "Output",
         images_to: Path | None = None) -> list[UpstreamFile]:
    """Fill the cache from a bundle; every file is verified before any is stored."""
    try:
        tar = tarfile.open(path, "r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise BadBundle(path, f"not a readable tar.gz ({exc})") from None
    with tar:
        lock = read_lock(tar, path)
        if images_to is not None and not lock.get("images"):
            raise BadBundle(path, "it holds no images (it was made without --images)")
        entries = [_entry(record, path) for record in lock.get("files") or []]
        staged: list[tuple[UpstreamFile, Path]] = []
        try:
            for item in entries:
                staged.append((item, _extract(tar, item, cache, path)))
            for item, temporary in staged:
                actual = sha256_of(temporary)
                if actual != item.sha256:
                    raise ChecksumMismatch(item.label, item.sha256, actual, f"bundle {path}")
            for item, temporary in staged:
                cache.adopt(temporary, item.sha256, item.label, f"bundle {path}")
        finally:
            for _, temporary in staged:
                temporary.unlink(missing_ok=True)
        if images_to is not None:
            _extract_images(tar, images_to)
    for item in entries:
        out.event("upstream-file", component=item.component, version=item.version,
                  file=item.path, sha256=item.sha256, action="loaded",
                  message=f"  loaded     {item.label}")
    out.event("bundle-loaded", path=str(path), files=len(entries),
              message=f"loaded {len(entries)} upstream files from {path} into {cache.root}")
    return entries


def _entry(record: dict, path: Path) -> UpstreamFile:
    try:
        item = UpstreamFile(str(record["component"]), str(record["version"]), str(record["file"]),
                            str(record.get("url", "")), str(record["sha256"]).lower())
    except (KeyError, TypeError):
        raise BadBundle(path, "a lock entry lacks component, version, file or sha256: "
                              f"{record!r}") from None
    if len(item.sha256) != 64 or any(c not in "0123456789abcdef" for c in item.sha256):
        raise BadBundle(path, f"{item.label}: {item.sha256!r} is not a sha256")
    return item


def _extract(tar: tarfile.TarFile, item: UpstreamFile, cache: Cache, path: Path) -> Path:
    try:
        source = tar.extractfile(tar.getmember(member_name(item)))
    except KeyError:
        source = None
    if source is None:
        raise BadBundle(path, f"the lock lists {member_name(item)}, the archive lacks it")
    handle, temporary = tempfile.mkstemp(dir=cache.scratch(), suffix=".bundle")
    with os.fdopen(handle, "wb") as sink:
        for block in iter(lambda: source.read(1 << 20), b""):
            sink.write(block)
    return Path(temporary)


def _extract_images(tar: tarfile.TarFile, target: Path) -> None:
    prefix = IMAGES + "/"
    members = [member.replace(name=member.name[len(prefix):], deep=False,
                              linkname=member.linkname[len(prefix):] if member.islnk()
                              else member.linkname)
               for member in tar.getmembers() if member.name.startswith(prefix)]
    target.mkdir(parents=True, exist_ok=True)
    # The "data" filter refuses absolute names, "..", devices and links out of the target.
    tar.extractall(target, members=members, filter="data")
