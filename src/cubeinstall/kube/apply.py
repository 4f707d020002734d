"""The apply engine: what every cluster stage uses to reach its desired objects.

    apply_objects(ctx_or_client, stage, objects)  -> list[Change]   # writes
    plan_objects(ctx_or_client, stage, objects)   -> list[Change]   # dry run + diff
    uninstall_stage(ctx_or_client, stage)         -> list[Change]   # deletes by label

Before anything is written, every object is resolved against discovery, so
an apiVersion the cluster does not serve fails the run with nothing applied.
Then phase by phase (``order.PHASES``): list what the stage has live, apply
the phase's objects concurrently with server-side apply, and pass its gates
(readiness, CRDs Established, webhooks serving) before the next phase.

An object is only written when it would change: a live object whose digest
annotation and values already match is "unchanged" without a request;
otherwise a server-side dry run is compared with the live object first.
A re-run therefore changes no resourceVersion.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable, TypeVar

from cubeinstall.kube import prune, wait, webhooks
from cubeinstall.kube.client import ApiResource, KubeClient, client_for
from cubeinstall.kube.diff import compact_diff, contained_in, same
from cubeinstall.kube.errors import (ApplyFailed, Conflict, Forbidden, KubeError, NotFound,
                                     Unsupported)
from cubeinstall.kube.objects import (DIGEST_ANNOTATION, ObjectKey, api_group, desired_object,
                                      is_owned, key_of, stage_selector, target)
from cubeinstall.kube.order import by_phase
from cubeinstall.kube.readiness import has_gate, readiness
from cubeinstall.kube.retry import Outage, call_with_retry, is_transient, namespace_not_yet
from cubeinstall.stages.base import Change

WORKERS = 8
MAX_LISTED = 5  # failures quoted in full; the rest are counted
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


@dataclass
class Item:
    source: dict
    resource: ApiResource | None = None
    desired: dict | None = None

    @property
    def key(self) -> ObjectKey:
        return key_of(self.desired if self.desired is not None else self.source)

    @property
    def group_kind(self) -> tuple[str, str]:
        return api_group(self.source.get("apiVersion", "")), self.source.get("kind", "")


class Engine:
    def __init__(self, client: KubeClient, stage: str, options: Options, out: Any = None):
        self.client, self.stage, self.options, self.out = client, stage, options, out
        self.deadline = time.monotonic() + options.stage_seconds
        self.outage = Outage(options.object_seconds)
        self.pool = ThreadPoolExecutor(max_workers=options.workers,
                                       thread_name_prefix=f"apply-{stage}")

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
                           stage=self.stage, **{"object": change.target, "action": change.action})
        return change

    def object_deadline(self) -> float:
        return min(time.monotonic() + self.options.object_seconds, self.deadline)

    def call(self, request: Callable[[], T], *, also: Callable[[Exception], bool] | None = None) -> T:
        """``request()`` retried by error class within the object's deadline and the outage budget."""
        def transient(error: Exception) -> bool:
            return ((is_transient(error) or (also is not None and also(error)))
                    and self.outage.allows_retry(error))

        def answered() -> T:
            result = request()
            self.outage.answered()
            return result
        return call_with_retry(answered, self.object_deadline(), transient=transient)

    # -- the run ----------------------------------------------------------------------------

    def run(self, objects: list[dict], *, dry_run: bool) -> list[Change]:
        items = self.prepare(objects, dry_run)
        changes: list[Change] = []
        created_namespaces: set[str] = set()
        for phase, phase_items in by_phase_items(items):
            self.resolve_deferred(phase_items, dry_run)
            live, existing = self.live_objects(phase_items)
            results = list(self.pool.map(
                lambda item: self.sync(item, live.get(item.key), item.key in existing, dry_run,
                                       created_namespaces), phase_items))
            failures = [r for r in results if isinstance(r, ApplyFailed)]
            if failures:
                raise merge_failures(self.stage, phase, failures)
            changes += [self.record(c) for c in results]
            if dry_run and phase == "namespaces":
                created_namespaces = {c.target.split(" ", 1)[1] for c in results
                                      if c.action == "create"}
            if not dry_run:
                settled = {item.key for item, change in zip(phase_items, results)
                           if change.action == "unchanged" and item.key in live
                           and readiness(live[item.key]).ok}
                self.gate(phase, phase_items, items, settled)
        if self.options.prune:
            changes += [self.record(c) for c in self.prune(items, dry_run)]
        return changes

    def prepare(self, objects: list[dict], dry_run: bool) -> list["Item"]:
        """Check every object and resolve its API before anything is written."""
        items, problems, hint = [], [], None
        crd_kinds = {((o.get("spec") or {}).get("group"), ((o.get("spec") or {}).get("names") or {})
                      .get("kind")) for o in objects if o.get("kind") == "CustomResourceDefinition"}
        for index, obj in enumerate(objects):
            if not (isinstance(obj, dict) and obj.get("apiVersion") and obj.get("kind")
                    and (obj.get("metadata") or {}).get("name")):
                problems.append(f"object #{index + 1} lacks apiVersion, kind or metadata.name")
                continue
            item = Item(obj)
            items.append(item)
            if item.group_kind in crd_kinds:
                continue  # resolved once its CRD is Established
            try:
                item.resource = self.call(
                    lambda: self.client.resolve(obj["apiVersion"], obj["kind"]))
            except (Unsupported, KubeError) as error:
                problems.append(f"{target(obj)}: {error.message}")
                hint = hint or error.hint
                continue
            item.desired = desired_object(obj, self.stage, item.resource.namespaced)
        seen: dict[ObjectKey, int] = {}
        for item in items:
            seen[item.key] = seen.get(item.key, 0) + 1
        problems += [f"{key}: listed {count} times" for key, count in seen.items() if count > 1]
        problems += self.missing_namespaces(items)
        if problems:
            raise ApplyFailed(self.stage, f"{len(problems)} problem(s) found before applying; "
                              "nothing was changed:\n  " + "\n  ".join(problems), hint)
        return items

    def missing_namespaces(self, items: list["Item"]) -> list[str]:
        ours = {item.key.name for item in items if item.group_kind == ("", "Namespace")}
        needed: dict[str, str] = {}
        for item in items:
            namespace = item.key.namespace
            if namespace and namespace not in ours:
                needed.setdefault(namespace, str(item.key))
        if not needed:
            return []
        resource = self.client.resolve("v1", "Namespace")
        present = {key_of(ns).name for ns in self.call(lambda: self.client.list(resource))}
        return [f"{user}: namespace {name} does not exist (create it in stage namespaces or "
                f"namespaces.extra in site.yaml)" for name, user in needed.items()
                if name not in present]

    def resolve_deferred(self, items: list["Item"], dry_run: bool) -> None:
        """Custom resources whose CRD is in this set: discovery knows them only now."""
        for item in items:
            if item.resource is not None:
                continue
            api_version, kind = item.source["apiVersion"], item.source["kind"]

            def resolve() -> ApiResource:
                try:
                    return self.client.resolve(api_version, kind)
                except Unsupported:
                    self.client.invalidate_discovery()
                    return self.client.resolve(api_version, kind)
            try:
                if dry_run:  # its CRD may not exist yet: plan shows it as a creation
                    item.resource = resolve()
                else:
                    item.resource = self.call(resolve, also=lambda e: isinstance(e, Unsupported))
            except Unsupported as error:
                if not dry_run:
                    raise ApplyFailed(self.stage, f"{target(item.source)}: {error.message}",
                                      error.hint, targets=(target(item.source),)) from None
            namespaced = item.resource.namespaced if item.resource else bool(
                (item.source.get("metadata") or {}).get("namespace"))
            item.desired = desired_object(item.source, self.stage, namespaced)

    def live_objects(self, items: list["Item"]) -> tuple[dict[ObjectKey, dict], set[ObjectKey]]:
        """What this stage has (full objects), and which of ``items`` exist at all.

        One labelled LIST per resource type, plus one metadata-only LIST per
        resource type and namespace: no request per object to learn that it is new.
        """
        scopes = {(item.resource, item.key.namespace if item.resource.namespaced else None)
                  for item in items if item.resource is not None}

        def owned(resource: ApiResource) -> list[dict]:
            return self.call(lambda: self.client.list(
                resource, label_selector=stage_selector(self.stage)))

        def names(scope: tuple[ApiResource, str | None]) -> list[ObjectKey]:
            resource, namespace = scope
            return [ObjectKey(resource.group, resource.kind, namespace or "", name)
                    for name in self.call(lambda: self.client.list_names(resource, namespace))]
        try:
            lists = list(self.pool.map(owned, {resource for resource, _ in scopes}))
            existing = {key for keys in self.pool.map(names, scopes) for key in keys}
        except KubeError as error:
            raise ApplyFailed(self.stage, f"cannot list live objects: {error.message}",
                              error.hint) from None
        return {key_of(obj): obj for items_ in lists for obj in items_}, existing

    # -- one object --------------------------------------------------------------------------

    def sync(self, item: "Item", live: dict | None, exists: bool, dry_run: bool,
             created_namespaces: set[str]) -> Change | ApplyFailed:
        """Bring one object to its desired state; an error is returned, not raised."""
        name = str(item.key)
        try:
            if live is not None and unchanged_without_asking(item.desired, live):
                return Change(name, "unchanged")
            if item.resource is None or item.key.namespace in created_namespaces:
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
            adopted = live is not None and not is_owned(live, self.stage)
            detail = "adopted: it existed without this stage's labels" if adopted else ""
            diff = compact_diff(live, result, name)
            if dry_run:
                return Change(name, action, f"would {action}" + (f"; {detail}" if detail else ""),
                              diff)
            self.apply(item)
            return Change(name, action, detail, diff)
        except KubeError as error:
            return object_failure(self.stage, name, error)

    def apply(self, item: "Item", dry_run: bool = False) -> dict:
        def call() -> dict:
            return self.client.apply(item.desired, item.resource, dry_run=dry_run,
                                     force=self.options.force_conflicts, what=str(item.key))
        try:
            return self.call(call, also=namespace_not_yet)
        except NotFound as error:
            if namespace_not_yet(error):
                raise
            # A stale discovery cache (CRD deleted and re-created at another version).
            self.client.invalidate_discovery()
            item.resource = self.client.resolve(item.source["apiVersion"], item.source["kind"])
            return self.call(call, also=namespace_not_yet)

    def get(self, item: "Item") -> dict | None:
        try:
            return self.call(lambda: self.client.get(
                item.resource, item.key.namespace or None, item.key.name))
        except NotFound:
            return None

    # -- gates and prune ------------------------------------------------------------------------

    def gate(self, phase: str, items: list["Item"], everything: list["Item"],
             settled: set[ObjectKey]) -> None:
        """Wait until the phase's objects are ready (``settled``: unchanged and seen ready)."""
        if self.options.gates:
            watched = [wait.Watched(item.key, item.resource) for item in items
                       if item.key not in settled and has_gate(item.desired)
                       and not self.waits_for_consumer(item)]
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

    def resolve_quietly(self, items: list["Item"]) -> None:
        try:
            self.resolve_deferred(items, dry_run=True)
        except ApplyFailed:
            pass

    def waits_for_consumer(self, item: "Item") -> bool:
        """A PVC of a WaitForFirstConsumer class binds only once a pod uses it."""
        if item.group_kind != ("", "PersistentVolumeClaim"):
            return False
        wanted = (item.desired.get("spec") or {}).get("storageClassName")
        if wanted == "":
            return False
        classes = self.client.list(self.client.resolve("storage.k8s.io/v1", "StorageClass"))
        for sc in classes:
            annotations = sc["metadata"].get("annotations") or {}
            if sc["metadata"]["name"] == wanted or (wanted is None and annotations.get(
                    "storageclass.kubernetes.io/is-default-class") == "true"):
                return sc.get("volumeBindingMode") == "WaitForFirstConsumer"
        return False

    def prune(self, items: list["Item"], dry_run: bool) -> list[Change]:
        wanted = {item.key for item in items}
        found = [f for f in prune.find_owned(self.client, self.stage, self.pool, self.report)
                 if f.key not in wanted]
        return prune.delete_found(
            self.client, found, stage=self.stage, purge=self.options.purge, dry_run=dry_run,
            object_seconds=self.options.object_seconds, stage_deadline=self.deadline,
            pool=self.pool, report=self.report, why="prune: no longer rendered")

    def uninstall(self, dry_run: bool) -> list[Change]:
        found = prune.find_owned(self.client, self.stage, self.pool, self.report)
        return [self.record(c) for c in prune.delete_found(
            self.client, found, stage=self.stage, purge=self.options.purge, dry_run=dry_run,
            object_seconds=self.options.object_seconds, stage_deadline=self.deadline,
            pool=self.pool, report=self.report, why="uninstall")]


# -- pure helpers ----------------------------------------------------------------------------------


def by_phase_items(items: list[Item]) -> list[tuple[str, list[Item]]]:
    by_source = {id(item.source): item for item in items}
    return [(phase, [by_source[id(obj)] for obj in objs])
            for phase, objs in by_phase([item.source for item in items])]


def unchanged_without_asking(desired: dict, live: dict) -> bool:
    """Our last apply had exactly this content and every value of it is still live."""
    fingerprint = desired["metadata"]["annotations"][DIGEST_ANNOTATION]
    live_annotations = (live.get("metadata") or {}).get("annotations") or {}
    return live_annotations.get(DIGEST_ANNOTATION) == fingerprint and contained_in(desired, live)


def object_failure(stage: str, name: str, error: KubeError) -> ApplyFailed:
    message = error.server_message
    if isinstance(error, Conflict) and error.is_field_conflict:
        managers = ", ".join(error.managers) or "another field manager"
        return ApplyFailed(
            stage, f"{name}: fields are owned by {managers}: {message}",
            f"let cubeinstall take them over (force conflicts, --force), or stop {managers} "
            f"from managing them", targets=(name,))
    if isinstance(error, Forbidden) and not is_transient(error):
        return ApplyFailed(stage, f"{name}: forbidden: {message}",
                           "the kubeconfig's user needs cluster-admin rights", targets=(name,))
    if is_transient(error):
        return ApplyFailed(stage, f"{name}: still failing at the deadline: {message}",
                           error.hint or "check the API server and its webhooks", targets=(name,))
    return ApplyFailed(stage, f"{name}: rejected by the API server: {message}",
                       error.hint or "fix the object in the stage's manifests", targets=(name,))


def merge_failures(stage: str, phase: str, failures: list[ApplyFailed]) -> ApplyFailed:
    if len(failures) == 1:
        return failures[0]
    prefix = f"stage {stage}: "
    lines = "\n  ".join(f.message.removeprefix(prefix) for f in failures[:MAX_LISTED])
    more = f"\n  ... and {len(failures) - MAX_LISTED} more" if len(failures) > MAX_LISTED else ""
    targets = tuple(t for f in failures for t in f.targets)
    return ApplyFailed(stage, f"{len(failures)} objects of phase {phase} failed:\n  {lines}{more}",
                       failures[0].hint, targets)


# -- entry points ----------------------------------------------------------------------------------


def _options(target_: Any, timeout: Any, **overrides: Any) -> Options:
    site = getattr(target_, "site", None)
    options = Options()
    if site is not None:
        options = replace(options, object_seconds=site.timeouts.object_seconds,
                          stage_seconds=site.timeouts.stage_seconds, webhooks=site.gates.webhooks)
    if isinstance(timeout, (int, float)):
        options = replace(options, object_seconds=float(timeout),
                          stage_seconds=max(options.stage_seconds, float(timeout)))
    elif timeout is not None:  # a site Timeouts
        options = replace(options, object_seconds=timeout.object_seconds,
                          stage_seconds=timeout.stage_seconds)
    return replace(options, **{k: v for k, v in overrides.items() if v is not None})


def _run(target_: Any, stage: str, cluster: str | None, options: Options, call,
         out: Any = None) -> list[Change]:
    engine = Engine(client_for(target_, cluster), stage, options,
                    out if out is not None else getattr(target_, "out", None))
    try:
        return call(engine)
    finally:
        engine.close()


def apply_objects(ctx_or_client: Any, stage: str, objects: list[dict], *, dry_run: bool = False,
                  timeout: Any = None, gates: bool = True, prune: bool = False,
                  force_conflicts: bool = False, webhooks: str | None = None,
                  cluster: str | None = None, out: Any = None) -> list[Change]:
    """Apply ``objects`` for ``stage``; returns one Change per object (and per pruned one).

    ``ctx_or_client``: a RunContext (its site's timeouts and gates, its output),
    a KubeClient or a kubernetes ApiClient. ``timeout``: seconds per object, or
    a site ``Timeouts``. ``webhooks``: "probe" or "skip" (default: the site's).
    """
    options = _options(ctx_or_client, timeout, gates=gates, prune=prune,
                       force_conflicts=force_conflicts, webhooks=webhooks)
    return _run(ctx_or_client, stage, cluster, options,
                lambda engine: engine.run(list(objects), dry_run=dry_run), out)


def plan_objects(ctx_or_client: Any, stage: str, objects: list[dict], *, prune: bool = False,
                 timeout: Any = None, force_conflicts: bool = False,
                 cluster: str | None = None, out: Any = None) -> list[Change]:
    """What apply would do: server-side dry run compared with live, nothing written."""
    return apply_objects(ctx_or_client, stage, objects, dry_run=True, timeout=timeout,
                         prune=prune, force_conflicts=force_conflicts, cluster=cluster, out=out)


def uninstall_stage(ctx_or_client: Any, stage: str, *, purge: bool = False,
                    dry_run: bool = False, timeout: Any = None, cluster: str | None = None,
                    out: Any = None) -> list[Change]:
    """Delete everything labelled with ``stage``, in reverse order; data kept unless ``purge``."""
    options = _options(ctx_or_client, timeout, purge=purge)
    return _run(ctx_or_client, stage, cluster, options, lambda e: e.uninstall(dry_run), out)
