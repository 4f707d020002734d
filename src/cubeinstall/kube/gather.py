"""Reading what explains an object's state: its pods and its namespace's events.

Shared by the readiness wait (which condenses them into one Diagnosis) and the
failure support bundle (which writes them out whole). Errors are KubeError,
left to the caller: each decides what a failed read means for it.
"""

from __future__ import annotations

from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.objects import key_of
from cubeinstall.kube.selectors import selector_string

POD_OWNERS = frozenset({("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"),
                        ("apps", "ReplicaSet"), ("batch", "Job")})


def runs_pods(obj: dict) -> bool:
    """Is ``obj`` a Pod or a workload whose pods explain its state?"""
    key = key_of(obj)
    return (key.group, key.kind) in POD_OWNERS or (key.group, key.kind) == ("", "Pod")


def pods_of(client: KubeClient, obj: dict) -> tuple[list[dict], set[str]]:
    """The pods a workload selects, and the names of its ReplicaSets (whose events
    explain a Deployment with no pods at all: quota, admission)."""
    key = key_of(obj)
    if key.kind == "Pod":
        return [obj], set()
    selector = selector_string((obj.get("spec") or {}).get("selector"))
    if not selector:
        return [], set()
    pods = client.list(client.resolve("v1", "Pod"), key.namespace, label_selector=selector)
    owned: set[str] = set()
    if key.kind == "Deployment":
        replicasets = client.list(client.resolve("apps/v1", "ReplicaSet"), key.namespace,
                                  label_selector=selector)
        owned = {rs["metadata"]["name"] for rs in replicasets}
    return pods, owned


def namespace_events(client: KubeClient, namespace: str) -> list[dict]:
    return client.list(client.resolve("v1", "Event"), namespace)
