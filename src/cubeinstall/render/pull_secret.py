"""The site registry's pull secret (hubsecret): the Secret, and the pods that list it.

One rule decides both: ``site.platform.registry_login`` (the stage namespaces
creates the Secret in every namespace; render.finalize adds it to every pod).
"""

from __future__ import annotations

import base64
import json
from typing import Iterable

from cubeinstall.render.walk import is_crd, pod_specs, writable_copy
from cubeinstall.site import platform
from cubeinstall.site.model import Site


def pull_secret(site: Site, namespace: str) -> dict:
    """A kubernetes.io/dockerconfigjson Secret for the site registry.

    Built in Python, never in a template: the password must only ever exist
    inside Secret data.
    """
    login = platform.registry_login(site)
    assert site.registry is not None and login is not None
    username, password = login
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = {"auths": {site.registry.host: {"username": username, "password": password,
                                             "auth": auth}}}
    encoded = base64.b64encode(json.dumps(config, sort_keys=True).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": platform.PULL_SECRET, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": encoded},
    }


def ensure_pull_secret(objects: Iterable[dict], secret_name: str = platform.PULL_SECRET) -> list[dict]:
    """New objects whose every pod spec lists ``secret_name`` in imagePullSecrets.

    For authenticated registries: the namespaces stage creates the secret in every
    namespace; pods only use it when their spec (or ServiceAccount) names it.
    """
    result = [writable_copy(obj) for obj in objects]
    for obj in result:
        if is_crd(obj):
            continue
        for pod_spec in pod_specs(obj):
            secrets = pod_spec.setdefault("imagePullSecrets", [])
            if not any(isinstance(s, dict) and s.get("name") == secret_name for s in secrets):
                secrets.append({"name": secret_name})
    return result
