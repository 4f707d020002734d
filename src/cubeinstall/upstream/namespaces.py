"""Namespaces an upstream component needs beyond the platform's (argo, volcano-system)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cubeinstall.render.pull_secret import pull_secret
from cubeinstall.site import platform

if TYPE_CHECKING:
    from cubeinstall.site.model import Site


def own_namespace(site: "Site", name: str) -> list[dict]:
    """The Namespace (labelled like the platform's) and its hubsecret, unless stage
    namespaces already creates it: a namespace has one owner, or uninstall of one stage
    would delete the other's."""
    if name in platform.platform_namespaces(site) or name in platform.SYSTEM_NAMESPACES:
        return []
    objects = [{"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {"istio-injection": "disabled"}}}]
    if platform.registry_login(site) is not None:
        objects.append(pull_secret(site, name))
    return objects
