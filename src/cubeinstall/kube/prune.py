"""Deleting what a stage owns: prune (objects no longer rendered) and uninstall.

Ownership is the pair of labels every applied object carries; nothing
without them is ever deleted. Objects with an ownerReference (ReplicaSets,
EndpointSlices copied from a Service's labels...) are left to the garbage
collector. Deletion walks the phases backwards (custom resources, webhooks,
workloads, config, CRDs, namespaces) and waits for each phase to be gone;
what stays stuck is reported with its finalizers.

Data is kept unless asked: PVCs and PVs are deleted only with ``purge``, PVs
with reclaimPolicy Retain never. A namespace or CRD that still holds
objects we do not own is kept, because deleting it would delete them too.
What is kept stops being managed: its two ownership labels give way to
``KEPT_LABEL=<stage>``, so that no object left behind claims to be managed by
cubeinstall, and ``uninstall --purge`` still finds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cubeinstall.core.change import Change
from cubeinstall.kube.client import ApiResource, KubeClient
from cubeinstall.kube.errors import ApplyFailed, KubeError, NotFound
from cubeinstall.kube.objects import (
    KEPT_LABEL,
    ObjectKey,
    is_ours,
    is_owned,
    kept_selector,
    key_of,
    stage_selector,
    unmanaged_labels_patch,
)
from cubeinstall.kube.order import deletion_order, phase_index
from cubeinstall.kube.retry import call_with_retry

# Made by controllers, never by us (a Service's labels are copied onto its endpoints).
SKIP_KINDS = frozenset({("", "Event"), ("events.k8s.io", "Event"), ("", "Endpoints"),
                        ("discovery.k8s.io", "EndpointSlice"), ("coordination.k8s.io", "Lease"),
                        ("apps", "ControllerRevision"), ("authorization.k8s.io", "*")})
# Objects we only label, never own: "deleting" them means giving back the fields we set.
RELEASE_ONLY = frozenset({("", "Node")})
# Present in every namespace; they do not make a namespace "hold user objects".
NAMESPACE_DEFAULTS = frozenset({("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")})
LIST_DEADLINE = 20.0
POLL = 0.5


@dataclass(frozen=True)
class Found:
    key: ObjectKey
    resource: ApiResource
    obj: dict


Report = Callable[[str], None]


def _listable(client: KubeClient) -> list[ApiResource]:
    return [r for r in client.listable_resources()
            if (r.group, r.kind) not in SKIP_KINDS and (r.group, "*") not in SKIP_KINDS]


def _list_all(client: KubeClient, pool: ThreadPoolExecutor, resources: Iterable[ApiResource],
              report: Report, namespace: str | None = None,
              selector: str | None = None) -> list[Found]:
    def one(resource: ApiResource) -> list[Found]:
        try:
            items = call_with_retry(lambda: client.list(resource, namespace, selector),
                                    time.monotonic() + LIST_DEADLINE)
        except KubeError as error:  # e.g. an aggregated API that is down
            report(f"cannot list {resource.kind} ({resource.group_version}): "
                   f"{error.server_message}")
            return []
        return [Found(key_of(obj), resource, obj) for obj in items
                if not (obj.get("metadata") or {}).get("ownerReferences")]
    return [found for chunk in pool.map(one, resources) for found in chunk]


def find_owned(client: KubeClient, stage: str, pool: ThreadPoolExecutor,
               report: Report, *, kept: bool = False,
               keys: Iterable[ObjectKey] | None = None) -> list[Found]:
    """What the stage owns; with ``kept``, also what an earlier uninstall or prune kept;
    ``keys``: only objects of their kinds are listed."""
    selectors = (stage_selector(stage), kept_selector(stage)) if kept else (stage_selector(stage),)
    resources = _listable(client)
    if keys is not None:
        kinds = {(key.group, key.kind) for key in keys}
        resources = [r for r in resources if (r.group, r.kind) in kinds]
    found = {f.key: f for selector in selectors for f in _list_all(
        client, pool, resources, report, selector=selector)}
    return list(found.values())


def _keep_reason(client: KubeClient, found: Found, stage: str, purge: bool,
                 pool: ThreadPoolExecutor, report: Report) -> str | None:
    kind, spec = found.key.kind, found.obj.get("spec") or {}
    if kind == "PersistentVolume" and spec.get("persistentVolumeReclaimPolicy") == "Retain":
        return "reclaimPolicy Retain: its data is kept"
    if kind in ("PersistentVolume", "PersistentVolumeClaim") and not purge:
        return "holds data: kept unless purge is asked for"
    if kind == "CustomResourceDefinition":
        others = _foreign_custom_resources(client, found.obj, stage)
        if others:
            return f"kept: {others} custom resource(s) not owned by stage {stage} still exist"
    if kind == "Namespace":
        foreign = [f for f in _list_all(client, pool, [r for r in _listable(client) if r.namespaced],
                                        report, namespace=found.key.name)
                   if (f.key.kind, f.key.name) not in NAMESPACE_DEFAULTS
                   and not (is_ours(f.obj, stage) and _deletable(f, purge))]
        if foreign:
            examples = ", ".join(str(f.key) for f in foreign[:3])
            return f"kept: it holds {len(foreign)} object(s) not deleted by this stage ({examples})"
    return None


def _deletable(found: Found, purge: bool) -> bool:
    if found.key.kind == "PersistentVolumeClaim":
        return purge
    return True


def _foreign_custom_resources(client: KubeClient, crd: dict, stage: str) -> int:
    spec = crd.get("spec") or {}
    version = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), None)
    try:
        resource = client.resolve(f"{spec['group']}/{version}", spec["names"]["kind"])
        items = client.list(resource)
    except (KubeError, KeyError):
        return 0
    return sum(1 for obj in items if not is_ours(obj, stage))


def delete_found(client: KubeClient, found: list[Found], *, stage: str, purge: bool,
                 dry_run: bool, object_seconds: float, stage_deadline: float,
                 pool: ThreadPoolExecutor, report: Report, why: str) -> list[Change]:
    """Delete in reverse phase order, waiting for each phase to be gone."""
    changes: list[Change] = []
    stuck: list[str] = []
    for _, phase in deletion_order(found, lambda item: phase_index(item.key.group, item.key.kind)):
        doomed = []
        for item in sorted(phase, key=lambda f: f.key):
            if (item.key.group, item.key.kind) in RELEASE_ONLY:
                if not dry_run:
                    _release(client, item, stage_deadline)
                changes.append(Change(str(item.key), "update", "released the fields cubeinstall set"))
                continue
            reason = _keep_reason(client, item, stage, purge, pool, report)
            if reason:
                if not dry_run:
                    _unmanage(client, item, stage, stage_deadline)
                changes.append(Change(str(item.key), "skip", f"{reason}; left unmanaged, "
                                      f"labelled {KEPT_LABEL}={stage}"))
            else:
                doomed.append(item)
                changes.append(Change(str(item.key), "delete", why))
        if dry_run or not doomed:
            continue
        list(pool.map(lambda f: _delete(client, f, stage_deadline), doomed))
        deadline = min(time.monotonic() + object_seconds, stage_deadline)
        stuck += _wait_gone(client, doomed, stage, deadline, report)
    if stuck:
        raise ApplyFailed(stage, "deletion did not finish:\n  " + "\n  ".join(stuck),
                          "a finalizer waits for a controller that may be gone; once you are sure, "
                          "remove it: kubectl patch KIND NAME --type=merge "
                          "-p '{\"metadata\":{\"finalizers\":null}}'", targets=tuple(stuck))
    return changes


def _release(client: KubeClient, found: Found, deadline: float) -> None:
    """Apply an empty object as our field manager: the server drops every field we owned."""
    empty = {"apiVersion": found.resource.group_version, "kind": found.key.kind,
             "metadata": {"name": found.key.name}}
    call_with_retry(lambda: client.apply(empty, found.resource, what=str(found.key)), deadline)


def _unmanage(client: KubeClient, found: Found, stage: str, deadline: float) -> None:
    if not is_owned(found.obj):
        return  # kept by an earlier run already
    call_with_retry(lambda: client.merge_patch(
        found.resource, found.key.namespace or None, found.key.name,
        unmanaged_labels_patch(stage), what=str(found.key)), deadline)


def _delete(client: KubeClient, found: Found, deadline: float) -> None:
    try:
        call_with_retry(lambda: client.delete(found.resource, found.key.namespace or None,
                                              found.key.name), deadline)
    except NotFound:
        pass


def _wait_gone(client: KubeClient, doomed: list[Found], stage: str, deadline: float,
               report: Report) -> list[str]:
    remaining = {f.key: f for f in doomed}
    announced = False
    while True:
        live: dict[ObjectKey, dict] = {}
        for resource in {f.resource for f in remaining.values()}:
            for selector in (stage_selector(stage), kept_selector(stage)):
                try:
                    items = client.list(resource, label_selector=selector)
                except KubeError:
                    items = [f.obj for f in remaining.values() if f.resource == resource]
                live.update((key_of(obj), obj) for obj in items)
        remaining = {k: Found(k, f.resource, live[k]) for k, f in remaining.items() if k in live}
        if not remaining:
            return []
        if time.monotonic() >= deadline:
            return [_stuck_message(f) for f in remaining.values()]
        if not announced:
            report(f"waiting for {len(remaining)} object(s) to be deleted")
            announced = True
        time.sleep(POLL)


def _stuck_message(found: Found) -> str:
    meta = found.obj.get("metadata") or {}
    finalizers = meta.get("finalizers") or (found.obj.get("spec") or {}).get("finalizers") or []
    text = f"{found.key}: still present"
    if finalizers:
        text += f", waiting for finalizers {', '.join(finalizers)}"
    conditions = [c.get("message") for c in (found.obj.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True" and c.get("message")]
    if conditions:
        text += f" ({'; '.join(conditions[:2])})"
    return text
