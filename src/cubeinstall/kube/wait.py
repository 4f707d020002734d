"""Waiting until applied objects are ready, and explaining why when they are not.

All objects of a phase are followed together: per resource type one WATCH
(with the stage's label selector) from no resourceVersion, which starts with
every object as it is now and then sends its changes, so a gate passes when
the event arrives, not at the next poll, and costs one request per type however
long it waits (a LIST first would tell nothing the watch does not). An object
that reports failure stops the wait at once; on the deadline every object still
waiting is diagnosed from its pods, events and logs. A watch that ends goes on
from its last resourceVersion; one that broke or whose version is too old
starts afresh; a type the credentials may list but not watch is listed every
POLL_MAX seconds instead.

CRDs are the exception: they are polled. Their objects are the whole schemas
(15 MB for kubeflow's), which a watch would send again on every status
update while the API server is busiest establishing them. A CRD is ready when
its resource is served, which one small aggregated-discovery request tells
for all of them (the API server publishes a CRD's resource only once it is
Established). Only the CRDs discovery does not serve yet are fetched, each by
name, after FULL_EVERY seconds, then twice as long each time up to FULL_MAX (a
busy API server is not made busier the longer it takes), and at the deadline,
to catch a CRD that failed (names not accepted) and to explain what is still
waiting; listing the stage's CRDs instead sent every schema again, the served
ones too (26 MB per platform install). Without aggregated discovery they are
listed on every poll.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cubeinstall.kube.client import ApiResource, KubeClient, WatchStream
from cubeinstall.kube.diagnose import Diagnosis, containers_needing_logs, diagnose
from cubeinstall.kube.errors import ApplyFailed, Forbidden, KubeError, NotFound
from cubeinstall.kube.gather import namespace_events, pods_of, runs_pods
from cubeinstall.kube.objects import ObjectKey, key_of, stage_selector
from cubeinstall.kube.readiness import Readiness, readiness, waiting
from cubeinstall.kube.retry import is_transient

POLL_FIRST, POLL_MAX = 0.25, 2.0
PROGRESS_EVERY = 10.0
# A CRD's names are accepted or refused within a second of its creation; establishing
# 14 big ones on a busy API server takes longer than 5 s, when they were all fetched.
FULL_EVERY, FULL_MAX = 15.0, 60.0
WATCH_SECONDS = 60  # one watch request at most this long; then another from where it ended
GONE = 410  # the watch's resourceVersion is too old: list again
CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")
MAX_EXPLAINED = 5
LOG_TAIL = 10


@dataclass(frozen=True)
class Watched:
    key: ObjectKey
    resource: ApiResource
    desired: dict | None = None  # what was applied (a CRD's served versions)


Report = Callable[[str], None]
NOT_FOUND = waiting("not found yet")


def wait_ready(client: KubeClient, watched: list[Watched], *, stage: str, deadline: float,
               report: Report) -> None:
    """Return when every watched object is ready; raise ApplyFailed naming the ones that are not."""
    remaining = {item.key: item for item in watched}
    last: dict[ObjectKey, tuple[dict | None, Readiness]] = {
        key: (None, NOT_FOUND) for key in remaining}
    started = next_progress = next_poll = time.monotonic()
    full_every = FULL_EVERY
    next_full = started + full_every
    delay = POLL_FIRST
    followed = {item.resource for item in watched if not _is_crd(item.resource)}
    with Feed(client, followed, stage_selector(stage), deadline) as feed:
        seen: dict[ObjectKey, dict | None] = {}
        while True:
            now = time.monotonic()
            crds = [item for item in remaining.values() if _is_crd(item.resource)]
            if crds and now >= next_poll:
                full = now >= next_full or now >= deadline
                if full:
                    full_every = min(FULL_MAX, full_every * 2)
                    next_full = now + full_every
                live, served = _poll(client, crds, stage, full=full)
                for key in served:
                    del remaining[key]
                seen.update((item.key, live.get(item.key)) for item in crds
                            if item.key not in served)
                next_poll, delay = now + delay, min(POLL_MAX, delay * 1.5)
            failures = []
            for key, obj in seen.items():
                if key not in remaining:
                    continue
                state = readiness(obj) if obj is not None else NOT_FOUND
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
            wake = min(deadline, next_progress + PROGRESS_EVERY,
                       next_poll if any(_is_crd(i.resource) for i in remaining.values())
                       else deadline)
            seen = feed.take(max(0.0, wake - now))


def _is_crd(resource: ApiResource) -> bool:
    return (resource.group, resource.kind) == CRD


class Feed:
    """One thread per resource type lists, then watches the stage's objects of that type
    and hands every version it sees to the waiting thread."""

    def __init__(self, client: KubeClient, resources: Iterable[ApiResource], selector: str,
                 deadline: float):
        self.client, self.selector, self.deadline = client, selector, deadline
        self.resources = list(resources)
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._streams: set[WatchStream] = set()

    def __enter__(self) -> Feed:
        for resource in self.resources:
            threading.Thread(target=self._follow, args=(resource,), daemon=True,
                             name=f"watch-{resource.plural}").start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        with self._lock:
            for stream in self._streams:
                stream.close()

    def take(self, timeout: float) -> dict[ObjectKey, dict | None]:
        """What arrived (None: deleted), waiting up to ``timeout`` for the first of it;
        a watch's error that waiting cannot fix is raised here."""
        found: dict[ObjectKey, dict | None] = {}
        try:
            entry = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            while True:
                if isinstance(entry, KubeError):
                    raise entry
                found[entry[0]] = entry[1]
                entry = self._queue.get_nowait()
        except queue.Empty:
            return found

    def _follow(self, resource: ApiResource) -> None:
        version, delay, polling = None, POLL_FIRST, False
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            try:
                if polling:
                    for obj in self.client.list(resource, label_selector=self.selector):
                        self._queue.put((key_of(obj), obj))
                    self._stop.wait(POLL_MAX)
                    continue
                version = self._watch(resource, version)
                delay = POLL_FIRST
            except KubeError as error:
                if self._stop.is_set():
                    return
                if error.status == GONE:
                    version = None
                elif isinstance(error, Forbidden) and not polling:
                    polling = True  # may list, not watch: poll as before watches
                elif is_transient(error):
                    version = None
                    self._stop.wait(delay)
                    delay = min(POLL_MAX, delay * 2)
                else:
                    self._queue.put(error)
                    return

    def _watch(self, resource: ApiResource, version: str | None) -> str | None:
        """Follow one watch request to its end; the version to go on from (None: start afresh:
        a watch from no version begins with every object as it is now)."""
        seconds = max(1, min(WATCH_SECONDS, int(self.deadline - time.monotonic()) + 1))
        stream = self.client.watch(resource, label_selector=self.selector,
                                   resource_version=version, seconds=seconds)
        with self._lock:
            if self._stop.is_set():
                stream.close()
            self._streams.add(stream)
        try:
            for kind, obj in stream:
                if kind == "ERROR":  # 410 Gone, mostly: the events since ``version`` are lost
                    return None
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind != "BOOKMARK":
                    self._queue.put((key_of(obj), None if kind == "DELETED" else obj))
            return version
        finally:
            with self._lock:
                self._streams.discard(stream)


def _poll(client: KubeClient, watched, stage: str, *, full: bool
          ) -> tuple[dict[ObjectKey, dict], set[ObjectKey]]:
    """Live objects by key, and the CRDs known served without them (unless ``full``).
    A transient failure (apiserver restarting) just means "not yet"."""
    found: dict[ObjectKey, dict] = {}
    served: set[ObjectKey] = set()
    for resource in {item.resource for item in watched}:
        of_type = [item for item in watched if item.resource == resource]
        try:
            known = _served_crds(client, of_type) if _is_crd(resource) else None
            if known is None:
                items = client.list(resource, label_selector=stage_selector(stage))
            else:
                served |= known
                pending = [item for item in of_type if item.key not in known]
                items = [obj for item in pending if (obj := _get(client, item))] if full else []
        except KubeError as error:
            if is_transient(error):
                continue
            raise
        found.update((key_of(obj), obj) for obj in items)
    return found, served


def _get(client: KubeClient, item: Watched) -> dict | None:
    try:
        return client.get(item.resource, item.key.namespace or None, item.key.name)
    except NotFound:
        return None


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
