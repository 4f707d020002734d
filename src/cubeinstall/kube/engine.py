"""The engine behind apply_objects / plan_objects / uninstall_stage.

Phase by phase (``order.PHASES``): list what the stage has live, bring the
phase's objects to their desired state concurrently (a bounded pool), then
pass the phase's gates (readiness, CRDs Established, webhooks serving)
before the next phase starts.

An object is only written when it would change: a live object whose digest
annotation and values already match is "unchanged" without a request;
otherwise a server-side dry run is compared with the live object first.
A re-run therefore changes no resourceVersion. Every request is retried by
error class (``retry``) within the object's deadline, and all of them share
one outage budget, so a dead API server fails the run once, not per object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from cubeinstall.core.change import Change
from cubeinstall.kube import prune, volumes, wait, webhooks
from cubeinstall.kube.client import ApiResource, KubeClient
from cubeinstall.kube.diff import compact_diff, contained_in, label_changes, same
from cubeinstall.kube.errors import ApplyFailed, KubeError, NotFound
from cubeinstall.kube.failures import merge_failures, object_failure
from cubeinstall.kube.objects import (
    DIGEST_ANNOTATION,
    MANAGED_AGAIN_PATCH,
    ObjectKey,
    is_kept,
    is_owned,
    key_of,
)
from cubeinstall.kube.readiness import has_gate, readiness
from cubeinstall.kube.resolution import (
    Item,
    absent_namespaces,
    by_phase_items,
    prepare,
    resolve_deferred,
)
from cubeinstall.kube.retry import call_within_outage, namespace_not_yet
from cubeinstall.kube.snapshot import LiveSnapshot

WORKERS = 8
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    object_seconds: float = 300
    stage_seconds: float = 1800
    gates: bool = True
    webhooks: str = "probe"  # "probe" | "skip"
    force_conflicts: bool = False
    prune: bool = False
    purge: bool = False
    workers: int = WORKERS
    # What earlier stages of the same plan would create (core.context.Planned).
    planned_namespaces: frozenset[str] = frozenset()
    planned_kinds: frozenset[tuple[str, str]] = frozenset()
    # Namespaces an earlier stage of this run created (core.context.Planned).
    created_namespaces: frozenset[str] = frozenset()
    # Objects another stage took over (site/stages.py took_over_from), by the stage that did:
    # never pruned here, and left to it by uninstall even while they carry this label.
    taken_over: Mapping[ObjectKey, str] = field(default_factory=dict)
    # Objects this stage took over that still carry the earlier owner's label (its new owner
    # never ran), by that owner: uninstall removes them with its own.
    inherited: Mapping[str, frozenset[ObjectKey]] = field(default_factory=dict)


class Engine:
    def __init__(self, client: KubeClient, stage: str, options: Options, out: Any = None,
                 snapshot: LiveSnapshot | None = None):
        """``snapshot``: what the run's stages have on this cluster, shared by their engines
        (default: this engine's own)."""
        self.client, self.stage, self.options, self.out = client, stage, options, out
        self.snapshot = snapshot or LiveSnapshot(client, frozenset({stage}))
        self.deadline = time.monotonic() + options.stage_seconds
        self.outage = client.outage  # one budget for every call to this cluster in the run
        self.pool = ThreadPoolExecutor(max_workers=options.workers,
                                       thread_name_prefix=f"apply-{stage}")
        self.created_namespaces: set[str] = set()  # by this engine's run
        self._present_namespaces: set[str] | None = None

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    # -- reporting -----------------------------------------------------------------------

    def report(self, message: str) -> None:
        if self.out is not None:
            self.out.info(message, stage=self.stage)

    def record(self, change: Change) -> Change:
        if self.out is not None:
            level = "debug" if change.action == "unchanged" else "info"
            self.out.event(level, message=f"{change.action} {change.target}"
                           + (f" ({change.detail})" if change.detail else ""),
                           stage=self.stage, object=change.target, action=change.action)
        return change

    def object_deadline(self) -> float:
        return min(time.monotonic() + self.options.object_seconds, self.deadline)

    def call(self, request: Callable[[], T], *, also: Callable[[Exception], bool] | None = None) -> T:
        """``request()`` retried by error class within the object's deadline and the outage
        budget; waiting for an unreachable server is said on stderr (not silent minutes)."""
        say = None if self.out is None else partial(self.out.warn, stage=self.stage)
        return call_within_outage(request, self.outage, self.object_deadline(), also=also,
                                  say=say)

    def present_namespaces(self) -> set[str]:
        """The cluster's namespaces when this engine first asks (the checks before applying
        and the search for namespaces nothing can exist in yet ask the same), with those
        an earlier stage of this run created since the run's shared list was taken."""
        if self._present_namespaces is None:
            self._present_namespaces = (self.snapshot.namespaces(self.stage, self.call)
                                        | self.options.created_namespaces)
        return self._present_namespaces

    # -- the run ----------------------------------------------------------------------------

    def run(self, objects: list[dict], *, dry_run: bool) -> list[Change]:
        items = prepare(self, objects)
        changes: list[Change] = []
        # Created by this run or by an earlier stage of this plan: nothing can exist in them.
        fresh_namespaces = (absent_namespaces(self, self.options.planned_namespaces)
                            | (set() if dry_run else set(self.options.created_namespaces)))
        for phase, phase_items in by_phase_items(items):
            resolve_deferred(self, phase_items, dry_run)
            live, existing = self.live_objects(phase_items, fresh_namespaces)
            changes += [self.record(c) for c in self.give_back_volumes(
                phase_items, live, existing, dry_run)]
            results = list(self.pool.map(partial(
                self.sync, live=live, existing=existing, dry_run=dry_run,
                fresh_namespaces=fresh_namespaces), phase_items))
            changes += [self.record(r) for r in results if isinstance(r, Change)]
            failures = [r for r in results if isinstance(r, ApplyFailed)]
            if failures:  # the rest of the phase is done and recorded; later phases are not
                raise merge_failures(self.stage, phase, failures)
            if phase == "namespaces":
                created = {item.key.name for item, change in zip(phase_items, results)
                           if change.action == "create"}
                fresh_namespaces |= created
                if not dry_run:
                    self.created_namespaces = created
            if not dry_run:
                settled = {item.key for item, change in zip(phase_items, results)
                           if change.action == "unchanged" and item.key in live
                           and readiness(live[item.key]).ok}
                self.gate(phase, phase_items, items, settled)
        if self.options.prune:
            changes += [self.record(c) for c in self.prune(items, dry_run)]
        return changes

    def live_objects(self, items: list[Item], fresh_namespaces: set[str]
                     ) -> tuple[dict[ObjectKey, dict], set[ObjectKey]]:
        """What this stage has (full objects), and which of ``items`` exist at all.

        One labelled LIST per resource type; then, only for objects it did not
        return (and not in a namespace this run created), one metadata-only LIST
        per resource type and namespace: never a request per object. Both come
        from the run's snapshot, which asks them once for the stages of the run.
        """
        resources = {item.resource for item in items if item.resource is not None}

        def owned(resource: ApiResource) -> list[dict]:
            return self.snapshot.owned(resource, self.stage, self.call)

        def names(scope: tuple[ApiResource, str | None]) -> list[ObjectKey]:
            resource, namespace = scope
            return [ObjectKey(resource.group, resource.kind, namespace or "", name)
                    for name in self.snapshot.names(resource, namespace, self.stage, self.call)]
        try:
            live = {key_of(obj): obj for found in self.pool.map(owned, resources) for obj in found}
            unknown = {(item.resource, item.key.namespace if item.resource.namespaced else None)
                       for item in items if item.resource is not None and item.key not in live
                       and item.key.namespace not in fresh_namespaces}
            existing = {key for keys in self.pool.map(names, unknown) for key in keys}
        except KubeError as error:
            raise ApplyFailed(self.stage, f"cannot list live objects: {error.message}",
                              error.hint) from None
        return live, existing | set(live)

    # -- one object --------------------------------------------------------------------------

    def sync(self, item: Item, *, live: dict[ObjectKey, dict], existing: set[ObjectKey],
             dry_run: bool, fresh_namespaces: set[str]) -> Change | ApplyFailed:
        """Bring one object to its desired state; an error is returned, not raised."""
        name = str(item.key)
        exists, live = item.key in existing, live.get(item.key)
        try:
            if live is not None and unchanged_without_asking(item.desired, live):
                return Change(name, "unchanged")
            if item.resource is None or (dry_run and item.key.namespace in fresh_namespaces):
                # Planned before its CRD or namespace exists: the server cannot dry-run it.
                return Change(name, "create", "would create (after its CRD/namespace)",
                              compact_diff(None, item.desired, name))
            if live is None:  # not labelled by this stage: new, or someone else's to adopt
                live = self.get(item) if exists else None
                if live is None and not dry_run:
                    self.apply(item)
                    return Change(name, "create")
            result = self.apply(item, dry_run=True)
            if live is not None and same(live, result):
                return Change(name, "unchanged")
            action = "create" if live is None else "update"
            if item.key.kind == "Node" and not item.key.group:
                action = "label"  # the node-labels stage writes labels of existing Nodes only
            adopted = live is not None and not is_owned(live, self.stage)
            kept = live is not None and is_kept(live)
            detail = ("adopted: it existed without this stage's labels"
                      + (" (kept by an earlier uninstall)" if kept else "")) if adopted else ""
            if action == "label":
                detail = "; ".join(filter(None, [label_changes(live, result), detail]))
            diff = compact_diff(live, result, name)
            if dry_run:
                return Change(name, action, f"would {action}" + (f"; {detail}" if detail else ""),
                              diff)
            self.apply(item)
            if kept:  # managed again: no longer marked as kept data
                self.call(partial(self.client.merge_patch, item.resource,
                                  item.key.namespace or None, item.key.name,
                                  MANAGED_AGAIN_PATCH, what=name))
            return Change(name, action, detail, diff)
        except KubeError as error:
            return object_failure(self.stage, name, error)

    def apply(self, item: Item, dry_run: bool = False) -> dict:
        """The dry run's answer; a write's is not read ({}): nothing needs it."""
        def call() -> dict:
            return self.client.apply(item.desired, item.resource, dry_run=dry_run,
                                     force=self.options.force_conflicts, what=str(item.key),
                                     answer=dry_run)
        try:
            return self.call(call, also=namespace_not_yet)
        except NotFound as error:
            if namespace_not_yet(error):
                raise
            # A stale discovery cache (CRD deleted and re-created at another version).
            self.client.invalidate_discovery()
            item.resource = self.client.resolve(item.source["apiVersion"], item.source["kind"])
            return self.call(call, also=namespace_not_yet)

    def get(self, item: Item) -> dict | None:
        try:
            return self.call(lambda: self.client.get(
                item.resource, item.key.namespace or None, item.key.name))
        except NotFound:
            return None

    def give_back_volumes(self, items: list[Item], live: dict[ObjectKey, dict],
                          existing: set[ObjectKey], dry_run: bool) -> list[Change]:
        """Released volumes kept from an earlier claim of the name they are bound to."""
        changes = []
        for item in items:
            if item.group_kind != ("", "PersistentVolume") or item.key not in existing:
                continue
            current = live.get(item.key) or self.get(item)
            if not volumes.stale_claim_binding(item.desired, current):
                continue
            if not dry_run:
                try:
                    self.call(partial(self.client.merge_patch, item.resource, None,
                                      item.key.name, volumes.CLEAR_CLAIM_UID, what=str(item.key)))
                except KubeError as error:
                    raise object_failure(self.stage, str(item.key), error) from None
            changes.append(Change(str(item.key), "update", (
                "would clear" if dry_run else "cleared") + " the uid of its deleted claim "
                "(Released, reclaimPolicy Retain): its data goes back to the new claim"))
        return changes

    # -- gates and prune ------------------------------------------------------------------------

    def gate(self, phase: str, items: list[Item], everything: list[Item],
             settled: set[ObjectKey]) -> None:
        """Wait until the phase's objects are ready (``settled``: unchanged and seen ready)."""
        if self.options.gates:
            claims = any(item.group_kind == ("", "PersistentVolumeClaim") for item in items)
            late_binding = self.late_binding_classes() if claims else (set(), False)
            watched = [wait.Watched(item.key, item.resource, item.desired) for item in items
                       if item.key not in settled and has_gate(item.desired)
                       and not self.served_by_pods_unprobed(item)
                       and not self.waits_for_consumer(item, late_binding)]
            if watched:
                wait.wait_ready(self.client, watched, stage=self.stage,
                                deadline=self.object_deadline(), report=self.report)
        if phase == "crds":
            self.client.invalidate_discovery()
        if phase == "webhooks" and self.options.gates and self.options.webhooks == "probe":
            configs = [i.desired for i in items if i.source["kind"] in webhooks.WEBHOOK_KINDS]
            if configs:
                self.resolve_quietly(everything)
                candidates = [webhooks.Candidate(i.desired, i.resource) for i in everything
                              if i.resource is not None and i.desired is not None
                              and i.source["kind"] not in webhooks.WEBHOOK_KINDS]
                webhooks.wait_serving(self.client, configs, candidates, stage=self.stage,
                                      deadline=self.object_deadline(), report=self.report)

    def resolve_quietly(self, items: list[Item]) -> None:
        try:
            resolve_deferred(self, items, dry_run=True)
        except ApplyFailed:
            pass

    def served_by_pods_unprobed(self, item: Item) -> bool:
        """An aggregated API, like a webhook, is served by pods: gates.webhooks skip covers both
        (on a simulated cluster those pods never answer)."""
        return self.options.webhooks == "skip" and item.group_kind == (
            "apiregistration.k8s.io", "APIService")

    def late_binding_classes(self) -> tuple[set[str], bool]:
        """WaitForFirstConsumer StorageClasses by name, and whether the default class is one."""
        names, default = set(), False
        for sc in self.call(lambda: self.client.list(
                self.client.resolve("storage.k8s.io/v1", "StorageClass"))):
            if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                names.add(sc["metadata"]["name"])
                default = default or (sc["metadata"].get("annotations") or {}).get(
                    "storageclass.kubernetes.io/is-default-class") == "true"
        return names, default

    @staticmethod
    def waits_for_consumer(item: Item, late_binding: tuple[set[str], bool]) -> bool:
        """A PVC of a WaitForFirstConsumer class binds only once a pod uses it."""
        if item.group_kind != ("", "PersistentVolumeClaim"):
            return False
        wanted = (item.desired.get("spec") or {}).get("storageClassName")
        names, default = late_binding
        return default if wanted is None else wanted in names

    def prune(self, items: list[Item], dry_run: bool) -> list[Change]:
        wanted = {item.key for item in items}
        found = [f for f in prune.find_owned(self.client, self.stage, self.pool, self.report,
                                             kept=self.options.purge) if f.key not in wanted]
        return self.delete(found, self.stage, dry_run, "prune: no longer rendered")

    def uninstall(self, dry_run: bool) -> list[Change]:
        found = prune.find_owned(self.client, self.stage, self.pool, self.report, kept=True)
        taken_over = self.options.taken_over
        changes = [Change(str(f.key), "skip", left_to(taken_over[f.key], self.stage))
                   for f in found if f.key in taken_over]
        changes += self.delete(found, self.stage, dry_run, "uninstall")
        for earlier, keys in self.options.inherited.items():
            theirs = [f for f in prune.find_owned(self.client, earlier, self.pool, self.report,
                                                  keys=keys) if f.key in keys]
            changes += self.delete(theirs, earlier, dry_run,
                                   f"uninstall: stage {self.stage} took it over from {earlier}")
        return [self.record(c) for c in changes]

    def delete(self, found: list[prune.Found], stage: str, dry_run: bool,
               why: str) -> list[Change]:
        """Delete what ``stage``'s label marks, but what another stage took over."""
        return prune.delete_found(
            self.client, [f for f in found if f.key not in self.options.taken_over],
            stage=stage, purge=self.options.purge, dry_run=dry_run,
            object_seconds=self.options.object_seconds, stage_deadline=self.deadline,
            pool=self.pool, report=self.report, why=why)


# -- helpers --------------------------------------------------------------------------------------


def left_to(owner: str, stage: str) -> str:
    """Why uninstall of ``stage`` leaves an object that still carries its label."""
    return (f"stage {owner} renders it now (it took it over from stage {stage}): left to it; "
            f"`uninstall --only {owner}` removes it")


def unchanged_without_asking(desired: dict, live: dict) -> bool:
    """Our last apply had exactly this content and every value of it is still live."""
    fingerprint = desired["metadata"]["annotations"][DIGEST_ANNOTATION]
    live_annotations = (live.get("metadata") or {}).get("annotations") or {}
    return live_annotations.get(DIGEST_ANNOTATION) == fingerprint and contained_in(desired, live)
