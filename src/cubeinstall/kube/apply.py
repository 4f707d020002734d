"""The apply engine's entry points: what every cluster stage calls.

    apply_objects(ctx_or_client, stage, objects)  -> list[Change]   # writes
    plan_objects(ctx_or_client, stage, objects)   -> list[Change]   # dry run + diff
    uninstall_stage(ctx_or_client, stage)         -> list[Change]   # deletes by label

``ctx_or_client`` is a RunContext (its site's timeouts and gates, its output),
a KubeClient or a kubernetes ApiClient. How the work is done: ``engine``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.kube.client import KubeClient, client_for
from cubeinstall.kube.engine import Engine, Options
from cubeinstall.kube.snapshot import LiveSnapshot
from cubeinstall.kube.objects import ObjectKey

__all__ = ["Engine", "Options", "apply_objects", "plan_objects", "uninstall_stage"]


def _own_cluster(target_: Any, cluster: str | None) -> bool:
    """``target_`` is a RunContext of the cluster acted on: its ``planned`` is that cluster's."""
    return isinstance(target_, RunContext) and cluster in (None, target_.cluster_name)


def _options(target_: Any, timeout: Any, cluster: str | None = None, **overrides: Any) -> Options:
    options = Options()
    if isinstance(target_, RunContext):
        site = target_.site
        options = replace(options, object_seconds=site.timeouts.object_seconds,
                          stage_seconds=site.timeouts.stage_seconds, webhooks=site.gates.webhooks,
                          planned_namespaces=frozenset(target_.planned.namespaces),
                          planned_kinds=frozenset(target_.planned.kinds))
    if _own_cluster(target_, cluster):
        options = replace(options, created_namespaces=frozenset(
            target_.planned.created_namespaces))
    if isinstance(timeout, (int, float)):
        options = replace(options, object_seconds=float(timeout),
                          stage_seconds=max(options.stage_seconds, float(timeout)))
    elif timeout is not None:  # a site Timeouts
        options = replace(options, object_seconds=timeout.object_seconds,
                          stage_seconds=timeout.stage_seconds)
    return replace(options, **{k: v for k, v in overrides.items() if v is not None})


def _run(target_: Any, stage: str, cluster: str | None, options: Options, call,
         out: Any = None) -> list[Change]:
    if out is None and isinstance(target_, RunContext):
        out = target_.out
    client = client_for(target_, cluster)
    engine = Engine(client, stage, options, out, _shared_snapshot(target_, cluster, client))
    try:
        return call(engine)
    finally:
        engine.close()
        if _own_cluster(target_, cluster):  # later stages need not look for objects there
            target_.planned.created_namespaces |= engine.created_namespaces


def _shared_snapshot(target_: Any, cluster: str | None, client: KubeClient
                     ) -> LiveSnapshot | None:
    """The snapshot the run's engines on ``cluster`` share (None: not in a run, or a stage
    the run does not apply there)."""
    if not isinstance(target_, RunContext):
        return None
    name = cluster or target_.cluster_name
    stages = target_.run_stages.get(name)
    if not stages:
        return None
    return target_.cached(f"live-snapshot:{name}:{','.join(sorted(stages))}",
                          lambda: LiveSnapshot(client, stages))


def apply_objects(ctx_or_client: Any, stage: str, objects: list[dict], *, dry_run: bool = False,
                  timeout: Any = None, gates: bool = True, prune: bool = False,
                  force_conflicts: bool = False, webhooks: str | None = None,
                  cluster: str | None = None, out: Any = None,
                  taken_over: Mapping[ObjectKey, str] | None = None) -> list[Change]:
    """Apply ``objects`` for ``stage``; returns one Change per object (and per pruned one).

    ``ctx_or_client``: a RunContext (its site's timeouts and gates, its output),
    a KubeClient or a kubernetes ApiClient. ``timeout``: seconds per object, or
    a site ``Timeouts``. ``webhooks``: "probe" or "skip" (default: the site's).
    ``taken_over``: objects another stage took over from this one (key -> that stage):
    never pruned.
    """
    options = _options(ctx_or_client, timeout, cluster, gates=gates, prune=prune,
                       force_conflicts=force_conflicts, webhooks=webhooks,
                       taken_over=taken_over)
    return _run(ctx_or_client, stage, cluster, options,
                lambda engine: engine.run(list(objects), dry_run=dry_run), out)


def plan_objects(ctx_or_client: Any, stage: str, objects: list[dict], *, prune: bool = False,
                 timeout: Any = None, force_conflicts: bool = False,
                 cluster: str | None = None, out: Any = None,
                 taken_over: Mapping[ObjectKey, str] | None = None) -> list[Change]:
    """What apply would do: server-side dry run compared with live, nothing written."""
    return apply_objects(ctx_or_client, stage, objects, dry_run=True, timeout=timeout,
                         prune=prune, force_conflicts=force_conflicts, cluster=cluster, out=out,
                         taken_over=taken_over)


def uninstall_stage(ctx_or_client: Any, stage: str, *, purge: bool = False,
                    dry_run: bool = False, timeout: Any = None, cluster: str | None = None,
                    out: Any = None, taken_over: Mapping[ObjectKey, str] | None = None,
                    inherited: Mapping[str, frozenset[ObjectKey]] | None = None) -> list[Change]:
    """Delete everything labelled with ``stage``, in reverse order; data kept unless ``purge``.
    ``taken_over``: objects another stage took over from this one (key -> that stage): left
    to it; ``inherited``: what this stage took over, by the earlier owner whose label it
    still carries: deleted too."""
    options = _options(ctx_or_client, timeout, purge=purge, taken_over=taken_over,
                       inherited=inherited)
    return _run(ctx_or_client, stage, cluster, options, lambda e: e.uninstall(dry_run), out)
