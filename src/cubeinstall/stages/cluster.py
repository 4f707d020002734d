"""The generic cluster stage: render objects, then plan or apply them with the engine.

Every stage that declares ``render(site)`` is planned, applied and removed by
these (see stages/contract.py). The engine reads timeouts, gates and the output
from the run context itself.
"""

from __future__ import annotations

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext


def client(ctx: RunContext, cluster_name: str | None = None):
    """The engine's client for a cluster (default: the one ctx targets), one per run."""
    from cubeinstall.kube.client import client_for

    return client_for(ctx, cluster_name)


def plan(ctx: RunContext, stage: str, objects: list[dict]) -> list[Change]:
    from cubeinstall.kube import plan_objects

    return plan_objects(ctx, stage, objects, prune=ctx.options.prune,
                        force_conflicts=ctx.options.force)


def apply(ctx: RunContext, stage: str, objects: list[dict]) -> list[Change]:
    from cubeinstall.kube import apply_objects

    return apply_objects(ctx, stage, objects, prune=ctx.options.prune,
                         force_conflicts=ctx.options.force)


def uninstall(ctx: RunContext, stage: str, purge: bool = False) -> list[Change]:
    from cubeinstall.kube import uninstall_stage

    return uninstall_stage(ctx, stage, purge=purge, dry_run=ctx.dry_run)


def offline(objects: list[dict]) -> list[Change]:
    """What a stage would create, without a cluster: one Change per rendered object."""
    return [Change(object_ref(obj), "create", "offline plan: not compared with a cluster")
            for obj in objects]


def object_ref(obj: dict) -> str:
    meta = obj.get("metadata", {})
    name = f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
    return f"{obj.get('kind')} {name}"
