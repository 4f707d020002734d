"""namespaces: the platform namespaces, their labels, and the hubsecret pull secret."""

from __future__ import annotations

import base64
import json

from cubeinstall import facts
from cubeinstall.render.engine import render_stage
from cubeinstall.site.model import Site

STAGE = "namespaces"


def render(site: Site) -> list[dict]:
    namespaces = [
        {"name": ns, "labels": {"istio-injection": "disabled",
                                **facts.NAMESPACE_EXTRA_LABELS.get(ns, {})}}
        for ns in facts.platform_namespaces(site)
    ]
    objects = render_stage(STAGE, namespaces=namespaces)
    if site.registry and site.registry.username and site.registry.password:
        for ns in facts.platform_namespaces(site) + facts.SYSTEM_NAMESPACES:
            objects.append(pull_secret(site, ns))
    return objects


def pull_secret(site: Site, namespace: str) -> dict:
    """A kubernetes.io/dockerconfigjson Secret for the site registry.

    Built in Python, never in a template: the password must only ever exist
    inside Secret data.
    """
    registry = site.registry
    assert registry and registry.username and registry.password
    password = registry.password.reveal()
    auth = base64.b64encode(f"{registry.username}:{password}".encode()).decode()
    config = {"auths": {registry.host: {"username": registry.username, "password": password,
                                        "auth": auth}}}
    encoded = base64.b64encode(json.dumps(config, sort_keys=True).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": facts.PULL_SECRET, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": encoded},
    }
