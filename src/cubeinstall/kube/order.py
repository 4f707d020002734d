"""The order objects are applied in: a kind-rank table of phases.

Each phase is applied (concurrently inside) and gated before the next one
starts: namespaces exist before anything lives in them, CRDs are Established
before their custom resources, workloads are ready before the webhook
configurations that route admission to them. Deletion walks the phases
backwards. Kinds not in the table (custom resources) come last.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Callable, TypeVar

from cubeinstall.kube.objects import api_group

T = TypeVar("T")

PHASES = ("namespaces", "crds", "cluster-rbac", "config", "volumes", "storage", "services",
          "workloads", "webhooks", "custom-resources")

_PHASE_KINDS: dict[str, tuple[tuple[str, str], ...]] = {
    "namespaces": (("", "Namespace"),),
    "crds": (("apiextensions.k8s.io", "CustomResourceDefinition"),),
    "cluster-rbac": (
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("networking.k8s.io", "IngressClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ),
    "config": (
        ("", "ServiceAccount"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "LimitRange"),
        ("", "ResourceQuota"),
        ("networking.k8s.io", "NetworkPolicy"),
    ),
    # Volumes before the claims pre-bound to them: a claim created first finds no volume
    # and the PV controller binds it only at its next resync (15 s by default).
    "volumes": (("", "PersistentVolume"),),
    "storage": (("", "PersistentVolumeClaim"),),
    "services": (("", "Service"), ("", "Endpoints"), ("discovery.k8s.io", "EndpointSlice")),
    "workloads": (
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("", "ReplicationController"),
        ("", "Pod"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("policy", "PodDisruptionBudget"),
        ("networking.k8s.io", "Ingress"),
    ),
    "webhooks": (
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("apiregistration.k8s.io", "APIService"),
    ),
}

_RANK = {group_kind: index for index, phase in enumerate(PHASES)
         for group_kind in _PHASE_KINDS.get(phase, ())}
CUSTOM_RESOURCES = len(PHASES) - 1


def phase_index(group: str, kind: str) -> int:
    return _RANK.get((group, kind), CUSTOM_RESOURCES)


def phase_of(obj: dict) -> int:
    return phase_index(api_group(obj.get("apiVersion", "")), obj.get("kind", ""))


def by_phase(objects: Iterable[T], phase: Callable[[T], int] = phase_of) -> list[tuple[str, list[T]]]:
    """Objects (or anything ``phase`` ranks) grouped by phase, in apply order; input order
    kept inside a phase."""
    buckets: dict[int, list[T]] = {}
    for obj in objects:
        buckets.setdefault(phase(obj), []).append(obj)
    return [(PHASES[index], buckets[index]) for index in sorted(buckets)]


def deletion_order(objects: Iterable[T], phase: Callable[[T], int] = phase_of
                   ) -> list[tuple[str, list[T]]]:
    """The reverse: custom resources first, namespaces last."""
    return list(reversed(by_phase(objects, phase)))
