"""What the stages that write their own workloads share: placement, volumes, Secrets.

- ``pod_values``: the values every workload template takes (node selector from
  the stage's placement label, the pull secret), so placement is decided in
  one place: ``Stage.placement_label(site)``.
- ``host_volume``: a PV on the shared storage bound to one claim, rendered by
  the pv-pvc stage's template so every such pair looks alike; the site's
  ``volumes.<claim>`` overrides its size and path like for the platform volumes; a claim
  already bound keeps its volume (stages/bound_volumes.py).
- ``opaque_secret``: the only way a password reaches an object, built in Python.
- ``roll_on_config_change``: a changed ConfigMap rolls the pods that use it.
"""

from __future__ import annotations

import base64
import hashlib
import json

from cubeinstall.render.engine import render_template
from cubeinstall.site import platform
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.stages.bound_volumes import keep_bound


def node_selector(site: Site, stage: str) -> dict[str, str]:
    label = registry.get(stage).placement_label(site)
    return {label: "true"} if label else {}


def pod_values(site: Site, stage: str) -> dict:
    """Values every pod template takes: its node selector, and the pull secret for specs
    that are not pods (e.g. a Prometheus resource; render.finalize adds it to pods)."""
    pull_secret = platform.PULL_SECRET if platform.registry_login(site) is not None else None
    return {"node_selector": node_selector(site, stage), "pull_secret": pull_secret}


def host_volume(site: Site, *, pv_name: str, namespace: str, claim: str, size: str,
                subpath: str) -> list[dict]:
    """A hostPath PV under the storage mount point (Retain) and the claim bound to it."""
    volume = platform.PlatformVolume(namespace, claim, size, subpath)
    return keep_bound(render_template("pv-pvc/volumes.yaml.j2", volumes=[{
        "pv_name": pv_name, "namespace": namespace, "claim": claim,
        "size": platform.volume_size(site, volume), "path": platform.volume_path(site, volume)}]),
        site.found_volumes)


def opaque_secret(name: str, namespace: str, data: dict[str, str],
                  labels: dict[str, str] | None = None) -> dict:
    """An Opaque Secret; values are revealed secrets or text derived from them."""
    metadata: dict = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode()
                 for key, value in sorted(data.items())},
    }


CONFIG_DIGEST_ANNOTATION = "cubeinstall.io/config-digest"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def roll_on_config_change(objects: list[dict]) -> list[dict]:
    """Stamp each workload's pod template with a digest of the ConfigMaps it uses.

    A changed ConfigMap alone restarts nothing; a changed pod template rolls
    the pods, so a new my.cnf or filebeat.yml takes effect on apply. Secrets are
    left out: a digest of a Secret would be a hash of a password in plain view.
    """
    config_maps = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o
                   for o in objects if o.get("kind") == "ConfigMap"}
    for obj in objects:
        if obj.get("kind") not in WORKLOAD_KINDS:
            continue
        template = obj["spec"]["template"]
        namespace = obj["metadata"].get("namespace")
        used = sorted(name for name in _config_map_names(template["spec"])
                      if (namespace, name) in config_maps)
        if not used:
            continue
        text = json.dumps([config_maps[(namespace, name)].get("data") for name in used],
                          sort_keys=True)
        annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[CONFIG_DIGEST_ANNOTATION] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return objects


def _config_map_names(pod_spec: dict) -> set[str]:
    names = {(v.get("configMap") or {}).get("name") for v in pod_spec.get("volumes") or []}
    for container in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        names |= {(e.get("configMapRef") or {}).get("name") for e in container.get("envFrom") or []}
        names |= {((e.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name")
                  for e in container.get("env") or []}
    return names - {None}
