"""Facts about kinds the patches need: which are cluster-scoped, where pod specs sit.

Tables, not guesses: a kind not listed here is namespaced unless a
CustomResourceDefinition of the same object set declares it ``scope: Cluster``.
"""

from __future__ import annotations

from typing import Iterable, Iterator

GroupKind = tuple[str, str]

CLUSTER_SCOPED: frozenset[GroupKind] = frozenset({
    ("", "Namespace"), ("", "Node"), ("", "PersistentVolume"), ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("storage.k8s.io", "StorageClass"), ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"), ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"), ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("resource.k8s.io", "DeviceClass"), ("resource.k8s.io", "ResourceSlice"),
    ("authentication.k8s.io", "TokenReview"),
    ("authorization.k8s.io", "SubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectAccessReview"),
})

# Where the PodSpec of a workload kind sits.
POD_SPEC_PATHS: dict[GroupKind, tuple[str, ...]] = {
    ("", "Pod"): ("spec",),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}

# Workloads that follow a component's placement label. DaemonSets run on every node.
PLACED_KINDS: frozenset[GroupKind] = frozenset(POD_SPEC_PATHS) - {("apps", "DaemonSet")}


def group_kind(obj: dict) -> GroupKind:
    return str(obj.get("apiVersion", "")).rpartition("/")[0], str(obj.get("kind", ""))


def is_crd(obj: dict) -> bool:
    return group_kind(obj) == ("apiextensions.k8s.io", "CustomResourceDefinition")


def cluster_scoped_kinds(objects: Iterable[dict]) -> frozenset[GroupKind]:
    """The table plus the kinds this object set's CRDs declare cluster-scoped."""
    specs = [obj.get("spec") or {} for obj in objects if is_crd(obj)]
    declared = {(spec.get("group", ""), (spec.get("names") or {}).get("kind", ""))
                for spec in specs if spec.get("scope") == "Cluster"}
    return CLUSTER_SCOPED | declared


def pod_spec(obj: dict) -> dict | None:
    """The PodSpec of a workload (the object itself is edited through it), else None."""
    path = POD_SPEC_PATHS.get(group_kind(obj))
    node = obj
    for key in path or ():
        node = node.get(key) if isinstance(node, dict) else None
    return node if path and isinstance(node, dict) else None


def containers(spec: dict) -> Iterator[dict]:
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                yield container
