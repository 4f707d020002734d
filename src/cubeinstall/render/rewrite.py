"""Render-time rewrite: point every image of the rendered objects at the site registry.

Pure functions over parsed objects (never string edits of YAML); they return new
objects and leave their input untouched. The renderer calls ``rewrite_images`` when
``site.registry.mirror`` is true. Images already in the site registry are left
exactly as written, so rewriting twice changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from cubeinstall.core.errors import ConfigError
from cubeinstall.render import naming
from cubeinstall.render.walk import image_slots, is_crd, writable_copy

if TYPE_CHECKING:
    from cubeinstall.site.model import Registry, Site


def rewrite_images(objects: Iterable[dict], site: "Site") -> list[dict]:
    """New objects whose every image points at the site registry (unchanged without one)."""
    result = [writable_copy(obj) for obj in objects]
    registry = site.registry
    if registry is None:
        return result
    for obj in result:
        if is_crd(obj):
            continue
        for slot in image_slots(obj):
            slot.set(rewritten(slot.get(), registry, where=_describe(obj)))
    return result


def rewritten(image: str, registry: "Registry", where: str = "") -> str:
    try:
        ref = naming.parse(image)
    except naming.InvalidReference as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc),
                          hint="fix the image of that object (or its component version)") from None
    if naming.in_registry(ref, registry):
        return image
    return naming.target_name(ref, registry)


def _describe(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    namespace = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', 'object')} {namespace}{meta.get('name', '?')}"

