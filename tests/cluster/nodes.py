"""Fake nodes for the test cluster, declared as data.

kwok plays the kubelet for every Node carrying the annotation
``kwok.x-k8s.io/node: fake``: it marks the node Ready, renews its lease
and moves pods bound to it through Running (and Succeeded for Job pods).
A node is therefore just an API object whose labels and capacity decide
where the scheduler puts pods -- exactly what cubeinstall's placement
logic (node roles -> labels -> nodeSelectors) must be tested against.

The defaults mirror the project's example site: one infra CPU node
carrying every service role, one plain CPU node and one GPU node of a
separate org.  No taints: the example's NoSchedule taint on the GPU node
is a site choice, not something the tests should inherit by accident.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cubeinstall.site.model import ROLE_PLACEMENTS

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_SELECTOR = f"{KWOK_ANNOTATION}=fake"

DEFAULT_CAPACITY = MappingProxyType({"cpu": "32", "memory": "256Gi", "pods": "110"})

_ROLE_LABELS = ("cpu", "train", "notebook", "service")
_INFRA_LABELS = ROLE_PLACEMENTS  # every component placement label of the product


def _true(*names: str) -> dict[str, str]:
    return {name: "true" for name in names}


@dataclass(frozen=True)
class FakeNode:
    """A kwok-managed node.

    ``capacity`` is merged over DEFAULT_CAPACITY (cpu 32, memory 256Gi,
    pods 110), so ``FakeNode("g", capacity={"nvidia.com/gpu": "8"})`` is a
    default node with eight GPUs.  Allocatable equals capacity.
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    capacity: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Mapping[str, str], ...] = ()
    #: InternalIP reported for the node (kwok would give all nodes one IP).
    # Loopback only: the API server dials a node's InternalIP for logs and
    # port-forwards, and tests must never send traffic off this machine.
    address: str | None = None
    #: Port the API server dials at ``address`` for pod logs: ControlPlane.kubelet_port
    #: (kwok's server) on a node at KUBELET_ADDRESS; None leaves the node without one.
    kubelet_port: int | None = None

    def resources(self) -> dict[str, str]:
        return {**DEFAULT_CAPACITY, **self.capacity}

    def manifest(self) -> dict[str, Any]:
        """The v1 Node object; status is accepted on create for nodes."""
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            **self.labels,
        }
        spec: dict[str, Any] = {"providerID": f"kwok://{self.name}"}
        if self.taints:
            spec["taints"] = [dict(t) for t in self.taints]
        status: dict[str, Any] = {"capacity": self.resources(), "allocatable": self.resources()}
        if self.address:
            status["addresses"] = [
                {"type": "InternalIP", "address": self.address},
                {"type": "Hostname", "address": self.name},
            ]
        if self.kubelet_port:
            status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.kubelet_port}}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {KWOK_ANNOTATION: "fake"},
            },
            "spec": spec,
            "status": status,
        }


#: kwok serves the kubelet API (pod logs) on this loopback address only, so the default
#: nodes keep failing to serve logs and port-forwards as before; a node that should
#: serve them takes this address and ``kubelet_port=ControlPlane.kubelet_port``.
KUBELET_ADDRESS = "127.0.10.99"
#: What kwok answers for the logs of any container (the CRI log format it reads).
FAKE_LOG_LINES = ("fake log line 1 from kwok", "fake log line 2 from kwok")


DEFAULT_NODES: tuple[FakeNode, ...] = (
    FakeNode(
        "node1",
        labels={**_true(*_ROLE_LABELS, *_INFRA_LABELS), "org": "public"},
        address="127.0.10.11",
    ),
    FakeNode("node2", labels={**_true(*_ROLE_LABELS), "org": "public"}, address="127.0.10.12"),
    FakeNode(
        "gpu1",
        labels={**_true("gpu", "train", "notebook", "service"), "org": "ai-lab"},
        capacity={"nvidia.com/gpu": "8"},
        address="127.0.10.21",
    ),
)


def node_schedulable(node: Any) -> bool:
    """Ready=True and free of the node-lifecycle taints (not-ready, unreachable).

    The node lifecycle controller taints every new node not-ready and lifts
    the taint shortly after kwok reports Ready; only then will the
    scheduler place pods there, so tests must wait for both.
    """
    conditions = (node.status.conditions or []) if node.status else []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    lifecycle_taints = [
        t for t in (node.spec.taints or []) if t.key.startswith("node.kubernetes.io/")
    ]
    return ready and not lifecycle_taints


def create_nodes(api_client: Any, nodes: Iterable[FakeNode]) -> None:
    """Create the Node objects (an existing node of the same name is replaced)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api_client)
    for node in nodes:
        try:
            core.create_node(node.manifest())
        except ApiException as exc:
            if exc.status != 409:
                raise
            core.delete_node(node.name)
            _wait_gone(core, node.name)
            core.create_node(node.manifest())


def _wait_gone(core: Any, name: str, timeout: float = 30.0) -> None:
    from kubernetes.client.rest import ApiException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_node(name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.1)
    raise TimeoutError(f"node {name} still exists {timeout:.0f}s after deletion")


def unready_nodes(api_client: Any, names: Iterable[str]) -> list[str]:
    """The subset of ``names`` that is not yet schedulable (or missing)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    by_name = {n.metadata.name: n for n in core.list_node().items}
    return [name for name in names if name not in by_name or not node_schedulable(by_name[name])]
