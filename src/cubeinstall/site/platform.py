"""What the cube-studio platform expects of a site (PLATFORM-FACTS.md), as data.

Names, paths and sizes the platform's images look for. Stages read them from
here, so a fact is written once; the site file overrides sizes and paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from cubeinstall.site.model import Node, Site

PULL_SECRET = "hubsecret"

# Every platform namespace gets hubsecret and istio-injection=disabled, as upstream's
# create_ns_secret.sh does for infra ... aihub (kube-system: the secret only).
# automl is the 2026 release's name for katib; both exist so either works.
PLATFORM_NAMESPACES = (
    "infra", "kubeflow", "istio-system", "knative-serving", "pipeline", "katib", "automl",
    "jupyter", "kfserving", "service", "cert-manager", "monitoring", "logging", "aihub",
)
# Namespaces that exist in every cluster: we add pull secrets to them but never
# own (or delete) the Namespace object itself.
SYSTEM_NAMESPACES = ("kube-system",)
NAMESPACE_EXTRA_LABELS = {"katib": {"katib-metricscollector-injection": "enabled"}}
# create_ns_secret.sh:11 takes istio-injection off ``service`` again: inference services
# that ask for a sidecar (sidecar.istio.io/inject) get one when an injector runs.
ISTIO_INJECTION_UNSET = ("service",)


def namespace_labels(name: str) -> dict[str, str]:
    labels = {} if name in ISTIO_INJECTION_UNSET else {"istio-injection": "disabled"}
    return {**labels, **NAMESPACE_EXTRA_LABELS.get(name, {})}


# The platform reads a cluster's kubeconfig from /home/myapp/kubeconfig/<cluster>-kubeconfig
# (upstream config.py CLUSTERS, install/README.md); an empty file means "in-cluster
# ServiceAccount" (py_k8s.py). Upstream ships a ConfigMap; we ship a Secret.
KUBECONFIG_SECRET = "kubernetes-config"
KUBECONFIG_NAMESPACES = ("infra", "pipeline", "katib", "automl")
KUBECONFIG_DIR = "/home/myapp/kubeconfig"


def kubeconfig_file(cluster: str) -> str:
    """The file (Secret key) of one cluster's kubeconfig in KUBECONFIG_DIR."""
    return f"{cluster}-kubeconfig"

# Item 2: directories on the shared storage, relative to its mount point.
DATA_DIRECTORIES = (
    "kubeflow/minio", "kubeflow/minio/mlpipeline", "kubeflow/global",
    "kubeflow/pipeline/workspace", "kubeflow/pipeline/archives",
    "infra/mysql", "monitoring/grafana", "monitoring/prometheus", "logging/elasticsearch",
)


@dataclass(frozen=True)
class PlatformVolume:
    namespace: str
    claim: str
    size: str
    subpath: str  # under the storage mount point


# The platform's own volumes: upstream's files as start.sh creates them (:139-143), plus
# pv-pvc-kubeflow.yaml (in the tree, not applied by start.sh; kept from earlier releases).
# The site's mount point replaces upstream's, ``volumes.<claim>`` their size and path.
UPSTREAM_MOUNT_POINT = "/data/k8s"
PLATFORM_VOLUME_FILES = tuple(
    f"install/kubernetes/pv-pvc-{name}.yaml"
    for name in ("infra", "jupyter", "automl", "pipeline", "service", "kubeflow"))
# Claims of the 2021 release's katib namespace (which cubeinstall still creates), copied
# from the automl claim of the same name: namespace -> the namespace whose volume it copies.
PLATFORM_VOLUME_COPIES = {"katib": ("automl", ("kubeflow-user-workspace",))}


def volume_size(site: Site, volume: PlatformVolume) -> str:
    override = site.volumes.get(volume.claim)
    return override.size if override and override.size else volume.size


def volume_path(site: Site, volume: PlatformVolume) -> str:
    override = site.volumes.get(volume.claim)
    if override and override.path:
        return override.path
    return f"{site.storage.mount_point}/{volume.subpath}"


def node_labels(node: Node) -> dict[str, str]:
    """Item 19: the labels a node carries, derived from its roles."""
    labels = {role: "true" for role in node.roles}
    labels["org"] = node.org
    labels.update(node.labels)
    return dict(sorted(labels.items()))


def platform_namespaces(site: Site) -> tuple[str, ...]:
    return PLATFORM_NAMESPACES + tuple(
        ns for ns in site.namespaces.extra if ns not in PLATFORM_NAMESPACES
    )


def registry_login(site: Site) -> tuple[str, str] | None:
    """(username, password) when the site registry needs a login, else None.

    The one rule for the pull secret: hubsecret exists in a namespace and every
    pod lists it exactly when this is not None.
    """
    registry = site.registry
    if registry is None or not registry.username or registry.password is None:
        return None
    return registry.username, registry.password.reveal()
