"""A stage's fingerprint: a digest of everything that decides what it does.

Cluster stages: their final rendered objects. Other layers: the site sections
they read. Secret values are part of the inputs (a new password must re-run
the stage), so only their digest is ever stored, never the values.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cubeinstall import __version__
from cubeinstall.site.model import Node, Site
from cubeinstall.site.secrets import Secret
from cubeinstall.site.stages import Layer, Stage

# What each non-cluster layer reads from the site.
_SECTIONS = {
    Layer.NODE: ("nodes", "ssh", "storage", "runtime", "registry"),
    Layer.REGISTRY: ("registry", "components", "cube"),
    Layer.DATABASE: ("mysql",),
}

# Which cluster a node belongs to changes nothing a node stage does on it (and leaving
# it out keeps the fingerprints of sites recorded before nodes had a cluster).
_NOT_NODE_WORK = frozenset({"cluster"})


def fingerprint(stage: Stage, site: Site, objects: list[dict] | None) -> str:
    inputs: dict[str, Any] = {"cubeinstall": __version__, "stage": stage.name}
    if objects is not None:
        inputs["objects"] = objects
    else:
        inputs["site"] = {name: getattr(site, name) for name in _SECTIONS.get(stage.layer, ())}
    text = json.dumps(inputs, sort_keys=True, default=_plain, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return "secret:" + hashlib.sha256(value.reveal().encode()).hexdigest()
    if hasattr(value, "model_dump"):
        return {name: getattr(value, name) for name in type(value).model_fields
                if not (isinstance(value, Node) and name in _NOT_NODE_WORK)}
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)
