"""The cluster state of a failed stage, collected for its support bundle.

What a person needs to see why a stage failed: the stage's objects that are
not ready (and those the failure names), the pods behind them and every other
pod that is not Ready in the stage's namespaces, their containers' last log
lines, and the events of those namespaces. Each read that fails is recorded
(what, and why) and the rest goes on. The whole collection runs in a daemon
thread under a time budget: a hung API server delays the failure report by
that budget at most, and never keeps the process alive.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.diagnose import (
    BUNDLE_LOG_LINES,
    container_statuses,
    event_order,
    pod_ready,
)
from cubeinstall.kube.errors import KubeError
from cubeinstall.kube.gather import namespace_events, pods_of, runs_pods
from cubeinstall.kube.objects import key_of, stage_selector, target
from cubeinstall.kube.readiness import readiness

BUDGET_SECONDS = 6.0
MAX_PODS = 20
MAX_EVENTS = 200


@dataclass(frozen=True)
class ContainerLog:
    pod: str  # "namespace/name"
    container: str
    previous: bool = False
    text: str | None = None
    missing: str = ""  # why there is no text


@dataclass
class ClusterState:
    server: str
    not_ready: list[tuple[dict, str]] = field(default_factory=list)  # live object, why
    ready: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # rendered, not in the cluster
    pods: list[dict] = field(default_factory=list)
    logs: list[ContainerLog] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what could not be collected, and why
    doing: str = "starting"

    def snapshot(self) -> ClusterState:
        # Shallow list copies: the worker only ever appends whole items (atomic under the GIL).
        return replace(self, **{name: list(getattr(self, name)) for name in (
            "not_ready", "ready", "absent", "pods", "logs", "events", "missing")})


def collect(client: KubeClient, stage: str, objects: list[dict], named: tuple[str, ...] = (),
            budget: float = BUDGET_SECONDS) -> ClusterState:
    """What the cluster says about ``stage``'s rendered ``objects``; ``named`` are the
    targets the failure names ("Deployment infra/mysql"), described even when ready."""
    state = ClusterState(server=client.host)
    worker = threading.Thread(target=_collect, args=(client, stage, objects, set(named), state),
                              name=f"support-{stage}", daemon=True)
    worker.start()
    worker.join(budget)
    if not worker.is_alive():
        return state
    result = state.snapshot()
    result.missing.append(f"collection stopped at its {budget:g}s budget while {state.doing}: "
                          "that and every later step were not collected")
    return result


def _collect(client: KubeClient, stage: str, objects: list[dict], named: set[str],
             state: ClusterState) -> None:
    try:
        _objects(client, stage, objects, named, state)
        namespaces = {key_of(obj).namespace for obj in objects}
        namespaces |= {key_of(obj).namespace for obj, _ in state.not_ready}
        namespaces = sorted(namespaces - {""})
        _pods(client, namespaces, state)
        _events(client, namespaces, state)
        _logs(client, state)
    except Exception as exc:  # noqa: BLE001 - a bug here must not cost the rest of the bundle
        state.missing.append(f"collection failed while {state.doing}: {type(exc).__name__}: {exc}")
    state.doing = "done"


def _attempt(state: ClusterState, doing: str, read, *args, **kwargs) -> tuple[Any, str]:
    """(``read(*args, **kwargs)``, "") or (None, why), noting in ``missing`` what failed."""
    state.doing = doing
    try:
        return read(*args, **kwargs), ""
    except KubeError as error:
        state.missing.append(f"{doing}: {error.server_message}")
        return None, error.server_message


def _read(state: ClusterState, doing: str, read, *args, **kwargs) -> Any:
    return _attempt(state, doing, read, *args, **kwargs)[0]


def _objects(client: KubeClient, stage: str, objects: list[dict], named: set[str],
             state: ClusterState) -> None:
    by_kind: dict[tuple[str, str], list[dict]] = {}
    for obj in objects:
        by_kind.setdefault((obj.get("apiVersion", ""), obj.get("kind", "")), []).append(obj)
    for (api_version, kind), rendered_objects in by_kind.items():
        resource = _read(state, f"finding the API of {kind} ({api_version})", client.resolve,
                         api_version, kind)
        live = resource and _read(state, f"listing the stage's {kind} objects", client.list,
                                  resource, label_selector=stage_selector(stage))
        if live is None:
            continue
        by_key = {key_of(obj): obj for obj in live}
        for rendered in rendered_objects:
            # Keyed as applied: a namespaced object without one lands in "default".
            namespace = (key_of(rendered).namespace or "default") if resource.namespaced else ""
            obj = by_key.get(replace(key_of(rendered), namespace=namespace))
            if obj is None:
                state.absent.append(target(rendered))
                continue
            check = readiness(obj)
            if not check.ok:
                state.not_ready.append((obj, check.message or "not ready"))
            elif target(obj) in named:
                state.not_ready.append((obj, "ready now, but named in the failure"))
            else:
                state.ready.append(target(obj))


def _pods(client: KubeClient, namespaces: list[str], state: ClusterState) -> None:
    found: dict[tuple[str, str], dict] = {}
    for obj, _ in list(state.not_ready):
        if runs_pods(obj):
            pods, _ = _read(state, f"listing the pods of {target(obj)}", pods_of, client,
                            obj) or ([], set())
            found.update((_pod_key(pod), pod) for pod in pods)
    for namespace in namespaces:
        pods = _read(state, f"listing the pods in namespace {namespace}", _pods_in, client,
                     namespace)
        found.update((_pod_key(pod), pod) for pod in pods or [] if not pod_ready(pod))
    ordered = sorted(found.values(), key=lambda pod: (pod_ready(pod), _pod_key(pod)))
    state.pods.extend(ordered[:MAX_PODS])
    if len(ordered) > MAX_PODS:
        state.missing.append(f"{len(ordered) - MAX_PODS} more pods were left out "
                             f"(at most {MAX_PODS} are described)")


def _events(client: KubeClient, namespaces: list[str], state: ClusterState) -> None:
    events: list[dict] = []
    for namespace in namespaces:
        events += _read(state, f"listing the events in namespace {namespace}",
                        namespace_events, client, namespace) or []
    # Events about cluster-scoped objects (a CRD, a volume) are recorded in "default".
    unscoped = {key_of(obj).name for obj, _ in state.not_ready if not key_of(obj).namespace}
    if unscoped and "default" not in namespaces:
        about = _read(state, "listing the events in namespace default", namespace_events,
                      client, "default") or []
        events += [e for e in about if (e.get("involvedObject") or {}).get("name") in unscoped]
    events.sort(key=event_order)
    if len(events) > MAX_EVENTS:
        state.missing.append(f"{len(events) - MAX_EVENTS} older events were left out")
    state.events.extend(events[-MAX_EVENTS:])


def _logs(client: KubeClient, state: ClusterState) -> None:
    for pod in list(state.pods):
        namespace, name = _pod_key(pod)
        where = f"{namespace}/{name}"
        if not (pod.get("spec") or {}).get("nodeName"):
            state.logs.append(ContainerLog(where, "", missing="the pod is not scheduled on a node"))
            continue
        statuses = {status.get("name"): status for status in container_statuses(pod)}
        spec = pod.get("spec") or {}
        for container in (c.get("name", "") for c in (spec.get("initContainers") or [])
                          + (spec.get("containers") or [])):
            status = statuses.get(container) or {}
            started = {**(status.get("lastState") or {}), **(status.get("state") or {})}
            if not ({"running", "terminated"} & started.keys()):
                reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
                state.logs.append(ContainerLog(where, container, missing="the container has not "
                                               f"started ({reason or 'no status yet'})"))
                continue
            for previous in (False, True) if status.get("restartCount") else (False,):
                state.logs.append(_log(client, state, namespace, name, container, previous))


def _log(client: KubeClient, state: ClusterState, namespace: str, pod: str, container: str,
         previous: bool) -> ContainerLog:
    which = "previous" if previous else "current"
    doing = f"the {which} log of container {container} of pod {namespace}/{pod}"
    text, why = _attempt(state, doing, client.pod_log, namespace, pod, container,
                         previous=previous, tail_lines=BUNDLE_LOG_LINES)
    return ContainerLog(f"{namespace}/{pod}", container, previous, text, why)


def _pods_in(client: KubeClient, namespace: str) -> list[dict]:
    return client.list(client.resolve("v1", "Pod"), namespace)


def _pod_key(pod: dict) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")
