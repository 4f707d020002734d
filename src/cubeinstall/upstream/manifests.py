"""What stages read: the parsed objects of cached upstream files (never the network).

A stage's ``render(site)`` calls ``objects(site, component, paths)``; if a file is not
in the cache the error says to run ``cubeinstall bundle fetch``. Bytes are re-verified
against their sha256 on every read; parsing (seconds for argo's 2.8 MB CRDs) is done
once per process and digest.

CustomResourceDefinitions are returned shared between calls (megabytes each; no patch
edits them): treat every returned object as read-only and change copies, which is what
``patches`` does.
"""

from __future__ import annotations

import copy
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
        documents = _parse(item.sha256, cache.read(item), item.label, cache)
        result += [doc if doc.get("kind") == "CustomResourceDefinition" else copy.deepcopy(doc)
                   for doc in documents]
    return result


def text(site: "Site", component: str, path: str) -> str:
    """A cached file as text (configuration files that are not Kubernetes objects)."""
    item = files(site, component, [path])[0]
    return Cache().read(item).decode("utf-8")


_PARSED: dict[str, tuple[dict, ...]] = {}  # digest -> documents: verified bytes, parsed once


def _parse(digest: str, data: bytes, label: str, cache: Cache) -> tuple[dict, ...]:
    if digest in _PARSED:
        return _PARSED[digest]
    # The parsed form is kept beside the file as JSON: reading JSON is about twenty
    # times faster than parsing megabytes of YAML, and every run renders every stage
    # (fingerprints). Keyed by the verified digest, so it can never be stale.
    parsed = cache.root / "parsed" / f"{digest}.json"
    try:
        documents = tuple(json.loads(parsed.read_bytes()))
    except (OSError, ValueError):
        documents = None
    if documents is not None:
        _PARSED[digest] = documents
        return documents
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
    _PARSED[digest] = documents
    write_atomically(parsed, json.dumps(documents, separators=(",", ":")))
    return documents
