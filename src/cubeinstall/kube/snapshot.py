"""What the stages of one run have on a cluster: one LIST per resource type for all of them.

Before it applies a phase, a stage needs its live objects of each type (those labelled
with its name) and, for the rest, whether they exist at all. Asked stage by stage, a
platform install listed ClusterRoles 18 times. An object carries one stage's label and,
within a run, only that stage writes it; so one LIST selecting every stage of the run,
split by the label, tells each stage what a LIST of its own would. Two rules keep it as
true as a LIST of its own, taken just before the phase:

- a part is handed out once: a stage that asks again (it applied twice) gets a new LIST;
- a LIST is shared for MAX_AGE seconds after it was sent, then asked again.

The names of what exists (metadata-only, per type and namespace) are shared the same way:
a stage asks only about objects it does not own, which no stage of the run writes but
the one that renders them. So is the list of namespaces (those the run creates are
known from the run itself).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cubeinstall.kube.client import ApiResource, KubeClient
from cubeinstall.kube.objects import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    STAGE_LABEL,
    key_of,
    stage_selector,
)

MAX_AGE = 10.0
T = TypeVar("T")
Call = Callable[[Callable[[], Any]], Any]  # how a request is sent (the engine's retries)


@dataclass
class _Answer:
    sent: float  # time.monotonic() when it was asked
    value: Any
    handed_to: set[str] = field(default_factory=set)  # stages that had their part


class LiveSnapshot:
    """Shared by the engines of one run on one cluster; safe to use from several threads."""

    def __init__(self, client: KubeClient, stages: frozenset[str], max_age: float | None = None):
        self.client, self.stages = client, frozenset(stages)
        self.max_age = MAX_AGE if max_age is None else max_age
        self._answers: dict[Hashable, _Answer] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def owned(self, resource: ApiResource, stage: str, call: Call) -> list[dict]:
        """``stage``'s objects of a type, as they are now (full objects)."""
        if stage not in self.stages:  # not of this run: a LIST of its own
            return call(lambda: self.client.list(resource, label_selector=stage_selector(stage)))
        by_stage = self._shared(("owned", resource), stage, lambda: self._list_by_stage(
            resource, call))
        return by_stage.get(stage, [])

    def names(self, resource: ApiResource, namespace: str | None, stage: str,
              call: Call) -> list[str]:
        """The names of every object of a type (in ``namespace``)."""
        return self._shared(("names", resource, namespace), stage, lambda: call(
            lambda: self.client.list_names(resource, namespace)))

    def namespaces(self, stage: str, call: Call) -> set[str]:
        """The cluster's namespaces (not those the run created since: the engine knows them,
        ``Options.created_namespaces``)."""
        resource = self.client.resolve("v1", "Namespace")
        return self._shared(("namespaces",), stage, lambda: {
            key_of(ns).name for ns in call(lambda: self.client.list(resource))})

    def _list_by_stage(self, resource: ApiResource, call: Call) -> dict[str, list[dict]]:
        stages = ",".join(sorted(self.stages))
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY},{STAGE_LABEL} in ({stages})"
        by_stage: dict[str, list[dict]] = {}
        for obj in call(lambda: self.client.list(resource, label_selector=selector)):
            labels = (obj.get("metadata") or {}).get("labels") or {}
            by_stage.setdefault(labels.get(STAGE_LABEL, ""), []).append(obj)
        return by_stage

    def _shared(self, key: Hashable, stage: str, ask: Callable[[], T]) -> T:
        """The answer to ``key`` asked at most MAX_AGE ago and not had by ``stage`` yet, or
        a new one (asked once for the stages that want it at the same time)."""
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            answer = self._answers.get(key)
            if (answer is None or stage in answer.handed_to
                    or time.monotonic() - answer.sent > self.max_age):
                sent = time.monotonic()
                answer = self._answers[key] = _Answer(sent, ask())
            answer.handed_to.add(stage)
            return answer.value
