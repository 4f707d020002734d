"""Before anything is written: every object checked and resolved against discovery.

An apiVersion the cluster does not serve, a duplicate, or a namespace that
does not exist fails the run here, with nothing applied. Custom resources
whose CRD is part of the same set are resolved later, once that CRD is
Established (``resolve_deferred``), retrying "no matches for kind" briefly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from cubeinstall.kube.client import ApiResource, KubeClient
from cubeinstall.kube.errors import ApplyFailed, KubeError, Unreachable, Unsupported
from cubeinstall.kube.objects import (
    ObjectKey,
    api_group,
    desired_object,
    key_of,
    target,
)
from cubeinstall.kube.order import by_phase

if TYPE_CHECKING:
    from cubeinstall.kube.engine import Engine


@dataclass
class Item:
    """One object of the set: as rendered, its API resource, and what we send."""

    source: dict
    resource: ApiResource | None = None
    desired: dict | None = None

    @property
    def key(self) -> ObjectKey:
        return key_of(self.desired if self.desired is not None else self.source)

    @property
    def group_kind(self) -> tuple[str, str]:
        return api_group(self.source.get("apiVersion", "")), self.source.get("kind", "")


def by_phase_items(items: list[Item]) -> list[tuple[str, list[Item]]]:
    by_source = {id(item.source): item for item in items}
    return [(phase, [by_source[id(obj)] for obj in objs])
            for phase, objs in by_phase([item.source for item in items])]


def prepare(engine: Engine, objects: list[dict]) -> list[Item]:
    """Check every object and resolve its API before anything is written."""
    items, problems, hint = [], [], None
    crd_kinds = crd_group_kinds(objects) | engine.options.planned_kinds
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
            item.resource = engine.call(
                partial(engine.client.resolve, obj["apiVersion"], obj["kind"]))
        except Unreachable:
            raise  # the server, not this object: one error, not one per object
        except (Unsupported, KubeError) as error:
            problems.append(f"{target(obj)}: {error.message}")
            hint = hint or error.hint
            continue
        item.desired = desired_object(obj, engine.stage, item.resource.namespaced)
    seen: dict[ObjectKey, int] = {}
    for item in items:
        seen[item.key] = seen.get(item.key, 0) + 1
    problems += [f"{key}: listed {count} times" for key, count in seen.items() if count > 1]
    problems += _missing_namespaces(engine, items)
    if problems:
        raise ApplyFailed(engine.stage, f"{len(problems)} problem(s) found before applying; "
                          "nothing was changed:\n  " + "\n  ".join(problems), hint)
    return items


def crd_group_kinds(objects: list[dict]) -> set[tuple[str, str]]:
    """(group, kind) of the custom resources the CustomResourceDefinitions among ``objects`` define."""
    return {((o.get("spec") or {}).get("group"), ((o.get("spec") or {}).get("names") or {})
             .get("kind")) for o in objects if o.get("kind") == "CustomResourceDefinition"}


def absent_namespaces(engine: Engine, names: frozenset[str]) -> set[str]:
    """Those of ``names`` the cluster does not have (only when asked about any)."""
    return set(names) - engine.present_namespaces() if names else set()


def _missing_namespaces(engine: Engine, items: list[Item]) -> list[str]:
    ours = ({item.key.name for item in items if item.group_kind == ("", "Namespace")}
            | engine.options.planned_namespaces)
    needed: dict[str, str] = {}
    for item in items:
        namespace = item.key.namespace
        if namespace and namespace not in ours:
            needed.setdefault(namespace, str(item.key))
    absent = absent_namespaces(engine, frozenset(needed))
    return [f"{user}: namespace {name} does not exist (create it in stage namespaces or "
            f"namespaces.extra in site.yaml)" for name, user in needed.items()
            if name in absent]


def resolve_deferred(engine: Engine, items: list[Item], dry_run: bool) -> None:
    """Custom resources whose CRD is in this set: discovery knows them only now."""
    for item in items:
        if item.resource is not None:
            continue
        resolve = partial(_resolve_fresh, engine.client, item.source["apiVersion"],
                          item.source["kind"])
        try:
            if dry_run:  # its CRD may not exist yet: plan shows it as a creation
                item.resource = resolve()
            else:
                item.resource = engine.call(resolve, also=lambda e: isinstance(e, Unsupported))
        except Unsupported as error:
            if not dry_run:
                raise ApplyFailed(engine.stage, f"{target(item.source)}: {error.message}",
                                  error.hint, targets=(target(item.source),)) from None
        namespaced = item.resource.namespaced if item.resource else bool(
            (item.source.get("metadata") or {}).get("namespace"))
        item.desired = desired_object(item.source, engine.stage, namespaced)


def _resolve_fresh(client: KubeClient, api_version: str, kind: str) -> ApiResource:
    """Resolve, asking discovery again once if the kind is not known (yet)."""
    try:
        return client.resolve(api_version, kind)
    except Unsupported:
        client.invalidate_discovery()
        return client.resolve(api_version, kind)
