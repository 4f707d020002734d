"""Render-time rewrite: point every image of the rendered objects at the site registry.

Pure functions over parsed objects (never string edits of YAML); they return new
objects and leave their input untouched. The renderer calls ``rewrite_images`` when
``site.registry.mirror`` is true. Images already in the site registry are left
exactly as written, so rewriting twice changes nothing.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Iterable

from cubeinstall.errors import ConfigError
from cubeinstall.images import naming
from cubeinstall.images.walk import image_slots

if TYPE_CHECKING:
    from cubeinstall.site.model import Registry, Site


def rewrite_images(objects: Iterable[dict], site: "Site") -> list[dict]:
    """New objects whose every image points at the site registry (unchanged without one)."""
    result = [_writable(obj) for obj in objects]
    registry = site.registry
    if registry is None:
        return result
    for obj in result:
        if _is_crd(obj):
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


def ensure_pull_secret(objects: Iterable[dict], secret_name: str = "hubsecret") -> list[dict]:
    """New objects whose every pod spec lists ``secret_name`` in imagePullSecrets.

    For authenticated registries: the namespaces stage creates the secret in every
    namespace; pods only use it when their spec (or ServiceAccount) names it.
    """
    result = [_writable(obj) for obj in objects]
    for obj in result:
        if _is_crd(obj):
            continue
        for pod_spec in _pod_specs(obj):
            secrets = pod_spec.setdefault("imagePullSecrets", [])
            if not any(isinstance(s, dict) and s.get("name") == secret_name for s in secrets):
                secrets.append({"name": secret_name})
    return result


def _is_crd(obj: dict) -> bool:
    return obj.get("kind") == "CustomResourceDefinition"


def _writable(obj: dict) -> dict:
    """A copy we may change. CRDs (up to megabytes, no images, no pods) are passed
    through as they are: copying them cost more than the whole rest of a render."""
    return obj if _is_crd(obj) else copy.deepcopy(obj)


def _pod_specs(obj: dict) -> list[dict]:
    """Mappings holding a pod's ``containers`` list of images: a PodSpec wherever it sits."""
    found: list[dict] = []
    stack: list = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            containers = item.get("containers")
            if isinstance(containers, list) and any(
                    isinstance(c, dict) and isinstance(c.get("image"), str) for c in containers):
                found.append(item)
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
    return found


def _describe(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    namespace = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', 'object')} {namespace}{meta.get('name', '?')}"

