"""Waiting until applied objects are ready, and explaining why when they are not.

All objects of a phase are watched together: one LIST per resource type per
poll (with the stage's label selector) instead of one GET per object. An
object that reports failure stops the wait at once; on the deadline every
object still waiting is diagnosed from its pods, events and logs.

CRDs are the exception: a LIST of them is the whole schemas (15 MB for
kubeflow's), which the API server encodes and we parse on every poll while it
is busiest establishing them. A CRD is ready when its resource is served,
which one small aggregated-discovery request tells for all of them (the API
server publishes a CRD's resource only once it is Established); the full
LIST runs only every FULL_EVERY seconds and at the deadline, to catch a CRD
that failed (names not accepted) and to explain what is still waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cubeinstall.kube.client import ApiResource, KubeClient
from cubeinstall.kube.diagnose import Diagnosis, containers_needing_logs, diagnose
from cubeinstall.kube.errors import ApplyFailed, KubeError
from cubeinstall.kube.gather import namespace_events, pods_of, runs_pods
from cubeinstall.kube.objects import ObjectKey, key_of, stage_selector
from cubeinstall.kube.readiness import Readiness, readiness, waiting
from cubeinstall.kube.retry import is_transient

POLL_FIRST, POLL_MAX = 0.25, 2.0
PROGRESS_EVERY = 10.0
FULL_EVERY = 5.0
CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")
MAX_EXPLAINED = 5
LOG_TAIL = 10


@dataclass(frozen=True)
class Watched:
    key: ObjectKey
    resource: ApiResource
    desired: dict | None = None  # what was applied (a CRD's served versions)


Report = Callable[[str], None]


def wait_ready(client: KubeClient, watched: list[Watched], *, stage: str, deadline: float,
               report: Report) -> None:
    """Return when every watched object is ready; raise ApplyFailed naming the ones that are not."""
    remaining = {item.key: item for item in watched}
    last: dict[ObjectKey, tuple[dict | None, Readiness]] = {}
    started = next_progress = time.monotonic()
    next_full = started + FULL_EVERY
    delay = POLL_FIRST
    while remaining:
        now = time.monotonic()
        full = now >= next_full or now >= deadline
        if full:
            next_full = now + FULL_EVERY
        live, served = _poll(client, remaining.values(), stage, full=full)
        failures = []
        for key in list(remaining):
            if key in served:
                del remaining[key]
                continue
            obj = live.get(key)
            state = readiness(obj) if obj is not None else waiting("not found yet")
            last[key] = (obj, state)
            if state.done:
                del remaining[key]
                if not state.ok:
                    failures.append(key)
        if failures:
            raise _failure(client, stage, "failed", [(k, *last[k]) for k in failures])
        if not remaining:
            return
        now = time.monotonic()
        if now >= deadline:
            raise _failure(client, stage, f"not ready after {now - started:.0f}s",
                           [(k, *last[k]) for k in remaining])
        if now >= next_progress + PROGRESS_EVERY:
            next_progress = now
            report("waiting for " + ", ".join(f"{k} ({last[k][1].message})"
                                              for k in list(remaining)[:MAX_EXPLAINED]))
        time.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(POLL_MAX, delay * 1.5)


def _poll(client: KubeClient, watched, stage: str, *, full: bool
          ) -> tuple[dict[ObjectKey, dict], set[ObjectKey]]:
    """Live objects by key, and the CRDs known served without them (unless ``full``).
    A transient failure (apiserver restarting) just means "not yet"."""
    found: dict[ObjectKey, dict] = {}
    served: set[ObjectKey] = set()
    for resource in {item.resource for item in watched}:
        try:
            if (resource.group, resource.kind) == CRD and not full:
                known = _served_crds(client, [w for w in watched if w.resource == resource])
                if known is not None:
                    served |= known
                    continue
            items = client.list(resource, label_selector=stage_selector(stage))
        except KubeError as error:
            if is_transient(error):
                continue
            raise
        found.update((key_of(obj), obj) for obj in items)
    return found, served


def _failure(client: KubeClient, stage: str, what: str,
             items: list[tuple[ObjectKey, dict | None, Readiness]]) -> ApplyFailed:
    diagnoses = [explain(client, obj, state.message) if obj is not None
                 else Diagnosis(f"{key}: {state.message}")
                 for key, obj, state in items[:MAX_EXPLAINED]]
    more = f"\n  ... and {len(items) - MAX_EXPLAINED} more" if len(items) > MAX_EXPLAINED else ""
    lines = "\n  ".join(d.message for d in diagnoses)
    hint = next((d.hint for d in diagnoses if d.hint), None)
    return ApplyFailed(stage, f"{len(items)} object(s) {what}:\n  {lines}{more}", hint,
                       targets=tuple(str(key) for key, _, _ in items))


def explain(client: KubeClient, obj: dict, message: str) -> Diagnosis:
    """Gather pods, events and crash logs of ``obj`` and diagnose it (best effort)."""
    key = key_of(obj)
    pods: list[dict] = []
    events: list[dict] = []
    logs: dict[tuple[str, str], str] = {}
    owned: set[str] = set()
    try:
        if key.namespace:
            events = namespace_events(client, key.namespace)
        if runs_pods(obj):
            pods, owned = pods_of(client, obj)
        for pod, container, previous in containers_needing_logs(pods)[:3]:
            try:
                logs[(pod, container)] = client.pod_log(key.namespace, pod, container,
                                                        previous=previous, tail_lines=LOG_TAIL)
            except KubeError as error:
                logs[(pod, container)] = f"(no log: {error.server_message})"
    except KubeError as error:  # diagnosis must never hide the original problem
        return Diagnosis(f"{key}: {message} (could not inspect further: {error.server_message})")
    return diagnose(obj, message, pods, events, logs, owned)


def _served_crds(client: KubeClient, crds: list[Watched]) -> set[ObjectKey] | None:
    """Which CRDs have every version they serve published; None without aggregated
    discovery (LIST them then)."""
    served = client.served_resources()
    if served is None:
        return None
    return {crd.key for crd in crds if crd.desired is not None
            and (wanted := _crd_resources(crd.desired)) and wanted <= served}


def _crd_resources(crd: dict) -> set[tuple[str, str, str]]:
    spec = crd.get("spec") or {}
    plural = (spec.get("names") or {}).get("plural", "")
    return {(spec.get("group", ""), version.get("name", ""), plural)
            for version in spec.get("versions") or [] if version.get("served", True)}
