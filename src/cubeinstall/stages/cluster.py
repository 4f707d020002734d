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
                        force_conflicts=ctx.options.force, taken_over=taken_over(ctx, stage))


def apply(ctx: RunContext, stage: str, objects: list[dict]) -> list[Change]:
    from cubeinstall.kube import apply_objects

    return apply_objects(ctx, stage, objects, prune=ctx.options.prune,
                         force_conflicts=ctx.options.force, taken_over=taken_over(ctx, stage))


def taken_over(ctx: RunContext, stage: str) -> frozenset:
    """What the stages that took objects over from this one render: this stage's prune
    leaves them, even while they still carry its label (a site installed by a version
    before the move, whose new owner has not run yet)."""
    from cubeinstall.site import stages as registry

    successors = registry.taken_over_by(stage)
    if not ctx.options.prune or not successors:
        return frozenset()
    from cubeinstall.kube.objects import key_of
    from cubeinstall.stages.contract import load

    return frozenset(key_of(obj) for successor in successors
                     for obj in load(successor).objects(ctx.site) or [])


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
