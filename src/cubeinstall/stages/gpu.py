"""gpu: the NVIDIA device plugin and dcgm-exporter, as cube-studio's start.sh:98-99 applies them.

From cube-studio's pinned install tree (install/kubernetes/gpu/), unchanged but for the
site's placement and pull policy:

- ``kube-system/nvidia-device-plugin-daemonset`` (k8s-device-plugin v0.17.1) makes
  ``nvidia.com/gpu`` schedulable on GPU nodes (the gpu-runtime node stage installs the
  container runtime it needs);
- ``monitoring/dcgm-exporter`` (DaemonSet, host network, port 9400, and its Service).
  The Service keeps upstream's ``prometheus.io/*`` annotations: Prometheus scrapes it
  with the ``kubernetes-service-endpoints`` job of cube-studio's additional scrape
  configuration (stages/prometheus_upstream.py). That job leaves the exporter's own
  ``namespace``/``pod`` labels (the GPU pod's) alone, which the platform's
  ``DCGM_FI_DEV_GPU_UTIL{namespace=..., pod=~...}`` queries need; a ServiceMonitor
  would rename them to ``exported_*`` unless it honoured labels. So this stage needs no
  monitoring CRD and may run before or without the prometheus stage.

Both select nodes through upstream's node affinity on ``gpu=true`` (dcgm-exporter also
``vgpu=true``): the label the node-labels stage puts on GPU nodes. A site that places
GPU pods by another label (``components.gpu.placement``) gets that key instead of ``gpu``.
"""

from __future__ import annotations

import copy

from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.upstream import manifests, patches
from cubeinstall.upstream.kinds import pod_spec

STAGE = "gpu"
UPSTREAM = ("cube-studio",)
COMPONENT = "cube-studio"
DEVICE_PLUGIN = "install/kubernetes/gpu/nvidia-device-plugin.yml"
DCGM_EXPORTER = "install/kubernetes/gpu/dcgm-exporter.yaml"
UPSTREAM_LABEL = "gpu"  # the node label upstream's affinity requires (=true)


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    objects = manifests.objects(site, COMPONENT, [DEVICE_PLUGIN, DCGM_EXPORTER])
    label = registry.get(STAGE).placement_label(site) or UPSTREAM_LABEL
    if label != UPSTREAM_LABEL:
        objects = require_node_label(objects, UPSTREAM_LABEL, label)
    return patches.set_pull_policy(objects)


def require_node_label(objects: list[dict], old: str, new: str) -> list[dict]:
    """Required node-affinity expressions on label ``old`` ask for label ``new`` instead."""
    result = []
    for obj in copy.deepcopy(objects):
        spec = pod_spec(obj)
        affinity = ((spec or {}).get("affinity") or {}).get("nodeAffinity") or {}
        required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
        for term in required.get("nodeSelectorTerms") or []:
            for expression in term.get("matchExpressions") or []:
                if expression.get("key") == old:
                    expression["key"] = new
        result.append(obj)
    return result
