"""namespaces: the platform namespaces, their labels, and the hubsecret pull secret."""

from __future__ import annotations

from cubeinstall.render.engine import render_stage
from cubeinstall.render.pull_secret import pull_secret
from cubeinstall.site import platform
from cubeinstall.site.model import Site

STAGE = "namespaces"


def render(site: Site) -> list[dict]:
    namespaces = [
        {"name": ns, "labels": {"istio-injection": "disabled",
                                **platform.NAMESPACE_EXTRA_LABELS.get(ns, {})}}
        for ns in platform.platform_namespaces(site)
    ]
    objects = render_stage(STAGE, namespaces=namespaces)
    if platform.registry_login(site) is not None:
        for ns in platform.platform_namespaces(site) + platform.SYSTEM_NAMESPACES:
            objects.append(pull_secret(site, ns))
    return objects
