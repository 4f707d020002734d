"""The one ordered list of every stage.

The order is the install order; uninstall walks it backwards. Each stage
states, as data: what it needs (capabilities provided by earlier stages),
whether a site enables it, where it runs (``Scope``) and which per-component
settings it honours (``options``; the site loader refuses the others).
``tests/unit/test_registry.py`` proves every need is met earlier, and
``tests/unit/test_stage_dependencies.py`` that the needs are complete: whatever a
stage's objects refer to (a namespace, a custom kind, a webhook that intercepts them)
comes from a stage it needs. ``all`` runs stages at once as far as the needs allow.
Implementations live in ``cubeinstall.stages.<module>`` (contract:
stages/contract.py) and are imported only when a stage runs, so listing
stages stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from cubeinstall.site.model import Site


class Layer(str, Enum):
    NODE = "node"
    REGISTRY = "registry"
    CLUSTER = "cluster"
    DATABASE = "database"


class Scope(str, Enum):
    """Where a stage runs. cube-studio runs its web platform on the first cluster and
    notebooks, pipelines, training and inference on every cluster of config.py's CLUSTERS."""

    NODES = "nodes"  # every node of the site, over SSH
    REGISTRY = "registry"  # the site registry
    PLATFORM = "platform cluster"  # the first cluster only: the platform itself
    EVERY_CLUSTER = "every cluster"  # what running the platform's workloads needs


# Per-component settings (``components.<stage>.<option>``) a stage may honour.
NAMESPACE_OPTION = "namespace"  # install into another namespace than its own
EXISTING_OPTION = "existing"  # mode: existing -- use what the cluster already runs
REPLACE_OPTION = "replace"  # mode: replace -- adopt removes an earlier install's controller
SERVER_OPTION = "server"  # server: where the existing installation's server answers


def _component_enabled(name: str, default: bool = True) -> Callable[["Site"], bool]:
    def enabled(site: "Site") -> bool:
        setting = site.component(name).enabled
        return default if setting is None else setting

    return enabled


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    layer: Layer
    module: str
    needs: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    placement: str | None = None  # default node label (=true) its pods select
    scope: Scope = Scope.PLATFORM
    options: frozenset[str] = frozenset()
    default_enabled: bool = True
    extra_enabled: Callable[["Site"], bool] | None = field(default=None, compare=False)
    holds: str | None = None  # a resource it uses for its whole run: no two at once
    # Stages that applied some of its objects in an earlier version: their labels may still
    # be on them until this stage runs, and their prune must leave those objects alone.
    took_over_from: tuple[str, ...] = ()


    def enabled(self, site: "Site") -> bool:
        if not _component_enabled(self.name, self.default_enabled)(site):
            return False
        return self.extra_enabled(site) if self.extra_enabled else True

    def placement_label(self, site: "Site") -> str | None:
        return site.component(self.name).placement or self.placement


def _has_gpu_nodes(site: "Site") -> bool:
    return any(node.is_gpu for node in site.nodes)


def _mysql_in_cluster(site: "Site") -> bool:
    return site.mysql.mode == "in-cluster"


def _redis_in_cluster(site: "Site") -> bool:
    return site.redis.mode == "in-cluster"


def _has_registry(site: "Site") -> bool:
    return site.registry is not None and site.registry.mirror


def _registry_needs_trust(site: "Site") -> bool:
    """Nodes pull from a registry they do not trust by default (no verification, or a
    private CA)."""
    return _has_registry(site) and (site.registry.insecure or site.registry.ca_file is not None)


_EVERY = Scope.EVERY_CLUSTER
# Node stages share each host's one root shell and edit the same files (daemon.json).
_NODE_SHELLS = "node shells"
# Two port-forward streams open at once can stall (db/portforward.py): one at a time.
_PORT_FORWARD = "port-forward"
_IN_NAMESPACE = frozenset({NAMESPACE_OPTION})

STAGES: tuple[Stage, ...] = (
    Stage("node-prep", "check hosts (OS, sudo, commands, clock), swap off, firewall", Layer.NODE,
          "node_prep", provides=("hosts-ready",), scope=Scope.NODES, holds=_NODE_SHELLS),
    Stage("storage", "mount the shared file system at /data/k8s on every node, create its directories", Layer.NODE,
          "storage", needs=("hosts-ready",), provides=("shared-storage",), scope=Scope.NODES,
          holds=_NODE_SHELLS),
    Stage("gpu-runtime", "NVIDIA runtime in docker/containerd on GPU nodes", Layer.NODE,
          "gpu_runtime", needs=("hosts-ready",), provides=("gpu-runtime",), scope=Scope.NODES,
          holds=_NODE_SHELLS, extra_enabled=_has_gpu_nodes),
    Stage("registry-trust", "every node trusts the site registry (docker or containerd)",
          Layer.NODE, "registry_trust", needs=("hosts-ready",), provides=("registry-trusted",),
          scope=Scope.NODES, holds=_NODE_SHELLS, extra_enabled=_registry_needs_trust),
    Stage("images", "mirror every image the site needs into the private registry",
          Layer.REGISTRY, "images", provides=("images",), scope=Scope.REGISTRY,
          extra_enabled=_has_registry),
    Stage("namespaces", "platform namespaces, labels, hubsecret and the platform's service accounts",
          Layer.CLUSTER, "namespaces", provides=("namespaces",), scope=_EVERY),
    Stage("node-labels", "node labels from roles, before anything selects on them",
          Layer.CLUSTER, "node_labels", provides=("node-labels",), scope=_EVERY),
    Stage("dashboard", "Kubernetes dashboards: cluster-admin and restricted user",
          Layer.CLUSTER, "dashboard", needs=("namespaces", "node-labels"), placement="kubeflow"),
    Stage("kube-batch", "kube-batch gang scheduler (Kubernetes < 1.22 only)", Layer.CLUSTER,
          "kube_batch", needs=("namespaces",), scope=_EVERY, default_enabled=False),
    Stage("mysql", "in-cluster MySQL 8 on mysql=true nodes", Layer.CLUSTER, "mysql",
          needs=("namespaces", "node-labels", "shared-storage"), provides=("mysql",),
          placement="mysql", extra_enabled=_mysql_in_cluster),
    Stage("databases", "the platform's databases (and application user)", Layer.DATABASE,
          "databases", needs=("mysql",), provides=("databases",), holds=_PORT_FORWARD),
    Stage("redis", "Redis with the site password on redis=true nodes", Layer.CLUSTER,
          "redis", needs=("namespaces", "node-labels"), provides=("redis",),
          placement="redis", extra_enabled=_redis_in_cluster, holds=_PORT_FORWARD),
    Stage("istio", "Istio CRDs, istiod and the ingress gateway", Layer.CLUSTER, "istio",
          needs=("namespaces", "node-labels"), provides=("istio",), placement="istio",
          scope=_EVERY, options=frozenset({EXISTING_OPTION})),
    # Every cluster: the platform binds the VirtualServices of the notebooks and services
    # it starts to kubeflow/kubeflow-gateway of the cluster they run in.
    Stage("ingress", "Istio Gateways (any host) and Service cube-ingress: how users reach "
          "the cluster's gateway", Layer.CLUSTER, "ingress", needs=("istio",),
          provides=("ingress",), scope=_EVERY, took_over_from=("gateway",)),
    Stage("kubeflow", "Argo Workflows and the Kubeflow training-operator", Layer.CLUSTER,
          "kubeflow", needs=("namespaces", "node-labels"), provides=("kubeflow",),
          placement="kubeflow", scope=_EVERY,
          options=frozenset({REPLACE_OPTION, EXISTING_OPTION, SERVER_OPTION})),
    Stage("prometheus", "prometheus-operator, Prometheus, Alertmanager, Grafana, exporters",
          Layer.CLUSTER, "prometheus", needs=("namespaces", "node-labels", "shared-storage"),
          provides=("monitoring",), placement="monitoring", scope=_EVERY),
    Stage("efk", "Elasticsearch, Filebeat and Kibana", Layer.CLUSTER, "efk",
          needs=("namespaces", "node-labels"), placement="logging"),
    Stage("frameworkcontroller", "FrameworkController for distributed training",
          Layer.CLUSTER, "frameworkcontroller", needs=("namespaces", "node-labels"),
          placement="kubeflow", scope=_EVERY, options=_IN_NAMESPACE),
    Stage("volcano", "Volcano batch scheduler and its admission webhooks", Layer.CLUSTER,
          "volcano", needs=("namespaces", "node-labels"), placement="kubeflow", scope=_EVERY,
          options=_IN_NAMESPACE | {EXISTING_OPTION, REPLACE_OPTION}),
    Stage("kubeconfig", "per-cluster kubeconfigs for the platform (Secret)", Layer.CLUSTER,
          "kubeconfig", needs=("namespaces",), provides=("kubeconfigs",)),
    Stage("pv-pvc", "PersistentVolumes and claims on /data/k8s", Layer.CLUSTER, "pv_pvc",
          needs=("namespaces", "shared-storage"), provides=("volumes",), scope=_EVERY),
    Stage("cube", "the cube-studio platform itself", Layer.CLUSTER, "cube",
          needs=("databases", "redis", "kubeconfigs", "volumes", "node-labels"),
          provides=("platform",), placement="kubeflow-dashboard"),
    Stage("gateway", "the platform's VirtualServices: its frontend, dashboards, grafana, "
          "kibana, argo", Layer.CLUSTER, "gateway", needs=("ingress", "platform")),
    # Last so that adding it renumbered no stage; it needs no earlier stage's objects
    # (dcgm-exporter is scraped by annotation, not through a ServiceMonitor).
    Stage("gpu", "NVIDIA device plugin and dcgm-exporter on GPU nodes", Layer.CLUSTER,
          "gpu", needs=("namespaces", "node-labels"), placement="gpu", scope=_EVERY,
          extra_enabled=_has_gpu_nodes),
)

STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
_BY_NAME = {stage.name: stage for stage in STAGES}


def get(name: str) -> Stage:
    return _BY_NAME[name]



# Node and registry stages prepare what every pod needs (runtimes, shared storage,
# images in the site registry): the cluster and database stages start after them.
_PREPARING = (Layer.NODE, Layer.REGISTRY)


def prerequisites(stage: Stage) -> frozenset[str]:
    """Every stage this one needs, directly or through other stages (whether or not a
    site enables them): a run starts it after those of them it runs."""
    return _PREREQUISITES[stage.name]


def _prerequisites() -> dict[str, frozenset[str]]:
    found: dict[str, frozenset[str]] = {}
    for position, stage in enumerate(STAGES):
        earlier = STAGES[:position]
        direct = {other.name for other in earlier if set(other.provides) & set(stage.needs)}
        if stage.layer not in _PREPARING:
            direct |= {other.name for other in earlier if other.layer in _PREPARING}
        found[stage.name] = frozenset(direct).union(*(found[name] for name in direct))
    return found


_PREREQUISITES = _prerequisites()


def taken_over_by(name: str) -> tuple[Stage, ...]:
    """The stages that took objects over from stage ``name`` (``took_over_from``)."""
    return tuple(stage for stage in STAGES if name in stage.took_over_from)
