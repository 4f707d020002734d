"""What stages read: the parsed objects of cached upstream files (never the network).

A stage's ``render(site)`` calls ``objects(site, component, paths)``; if a file is not
in the cache the error says to run ``cubeinstall bundle fetch``. Parsing (seconds for
argo's 2.8 MB CRDs) is done once per digest: in memory for the process, and on disk as
JSON (``parsed/<source sha256>-<json sha256>.json``, checked against its own name on
every read, re-made from the source when it does not match). Only a parse reads the
source bytes, and the cache verifies them against the pinned sha256 then.

CustomResourceDefinitions are returned shared between calls (megabytes each; no patch
edits them): treat every returned object as read-only and change copies, which is what
``patches`` does.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import TYPE_CHECKING, Iterable

import yaml

from cubeinstall.core.errors import CubeError
from cubeinstall.core.files import write_atomically
from cubeinstall.core.yamlio import load_documents
from cubeinstall.upstream import catalog
from cubeinstall.upstream.cache import Cache, NotFetched

if TYPE_CHECKING:
    from cubeinstall.site.model import Site


def files(site: "Site", component: str, paths: Iterable[str] | None = None):
    resolved = catalog.resolve(site, component)
    return [resolved.file(path) for path in paths] if paths is not None else list(resolved.files)


def require(site: "Site", components: Iterable[str]) -> None:
    """Fail at once, naming every missing file, before a stage renders anything."""
    cache = Cache()
    missing = [item for name in components for item in cache.missing(files(site, name))]
    if missing:
        raise NotFetched(missing)


def objects(site: "Site", component: str, paths: Iterable[str] | None = None) -> list[dict]:
    """The Kubernetes objects of the component's files (all files, or ``paths`` in order)."""
    cache = Cache()
    chosen = files(site, component, paths)
    missing = cache.missing(chosen)
    if missing:
        raise NotFetched(missing)
    result: list[dict] = []
    for item in chosen:
        documents = _documents(item, cache)
        result += [doc if doc.get("kind") == "CustomResourceDefinition" else copy.deepcopy(doc)
                   for doc in documents]
    return result


def text(site: "Site", component: str, path: str) -> str:
    """A cached file as text (configuration files that are not Kubernetes objects)."""
    item = files(site, component, [path])[0]
    return Cache().read(item).decode("utf-8")


_PARSED: dict[str, tuple[dict, ...]] = {}  # source digest -> documents, for this process


def _documents(item, cache: Cache) -> tuple[dict, ...]:
    documents = _PARSED.get(item.sha256)
    if documents is None:
        documents = _read_parsed(cache, item.sha256)
    if documents is None:
        documents = _parse(cache.read(item), item.label)  # read() verifies the pinned sha256
        _write_parsed(cache, item.sha256, documents)
    _PARSED[item.sha256] = documents
    return documents


def _read_parsed(cache: Cache, digest: str) -> tuple[dict, ...] | None:
    """The parsed copy, if one exists whose bytes hash to the name they are stored under."""
    for path in sorted((cache.root / "parsed").glob(f"{digest}-*.json")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == path.stem.rpartition("-")[2]:
            return tuple(json.loads(data))
        path.unlink(missing_ok=True)  # damaged: parsed again from the verified source
    return None


def _write_parsed(cache: Cache, digest: str, documents: tuple[dict, ...]) -> None:
    data = json.dumps(documents, separators=(",", ":")).encode()
    write_atomically(cache.root / "parsed" / f"{digest}-{hashlib.sha256(data).hexdigest()}.json",
                     data)


def _parse(data: bytes, label: str) -> tuple[dict, ...]:
    try:
        documents = tuple(load_documents(data.decode("utf-8")))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CubeError(f"{label}: not valid YAML: {exc}",
                        hint="the catalog pins this file; report it to cubeinstall") from None
    bad = [index for index, doc in enumerate(documents, 1)
           if not isinstance(doc, dict) or "kind" not in doc]
    if bad:
        raise CubeError(f"{label}: documents {bad} are not Kubernetes objects",
                        hint="the catalog pins this file; report it to cubeinstall")
    return documents
