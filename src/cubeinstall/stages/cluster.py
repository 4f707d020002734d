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
                        force_conflicts=ctx.options.force, taken_over=_pruning(ctx, stage))


def apply(ctx: RunContext, stage: str, objects: list[dict]) -> list[Change]:
    from cubeinstall.kube import apply_objects

    return apply_objects(ctx, stage, objects, prune=ctx.options.prune,
                         force_conflicts=ctx.options.force, taken_over=_pruning(ctx, stage))


def _pruning(ctx: RunContext, stage: str) -> dict:
    """What a prune must leave (rendered only when it prunes)."""
    return taken_over(ctx, stage) if ctx.options.prune else {}


def taken_over(ctx: RunContext, stage: str) -> dict:
    """What the stages that took objects over from this one render (key -> that stage) on
    this cluster: this stage's prune and uninstall leave them, even while they still carry
    its label (a site installed by a version before the move, whose new owner has not run
    yet)."""
    from cubeinstall.site import stages as registry

    return {key: successor.name for successor in registry.taken_over_by(stage)
            for key in _rendered_keys(ctx, successor)}


def inherited(ctx: RunContext, stage: str) -> dict:
    """What this stage renders, by each stage it took objects over from: its uninstall
    removes them also where they still carry that stage's label (it never ran since)."""
    from cubeinstall.site import stages as registry

    own = registry.get(stage)
    if not own.took_over_from:
        return {}
    keys = frozenset(_rendered_keys(ctx, own))
    return {earlier: keys for earlier in own.took_over_from}


def _rendered_keys(ctx: RunContext, stage) -> list:
    from cubeinstall.kube.objects import key_of
    from cubeinstall.stages.contract import load

    return [key_of(obj) for obj in load(stage).objects(ctx.site) or []]


def uninstall(ctx: RunContext, stage: str, purge: bool = False) -> list[Change]:
    from cubeinstall.kube import uninstall_stage
    from cubeinstall.site import stages as registry
    from cubeinstall.upstream.cache import NotFetched

    try:
        # a disabled new owner removes nothing: what it would render goes with this stage
        left = {key: owner for key, owner in taken_over(ctx, stage).items()
                if registry.get(owner).enabled(ctx.site)}
        inherit = inherited(ctx, stage)
    except NotFetched as missing:
        # Both ends of a move render the same stage: neither can here, so each removes
        # what carries its own label, as before the move (the whole site still goes).
        others = [s.name for s in registry.taken_over_by(stage)]
        others += registry.get(stage).took_over_from
        ctx.out.warn(f"{stage}: {missing.message}; uninstall cannot tell which objects moved "
                     f"between this stage and {', '.join(others)}: it removes what carries "
                     "its label", stage=stage, hint=missing.hint)
        left, inherit = {}, {}
    return uninstall_stage(ctx, stage, purge=purge, dry_run=ctx.dry_run, taken_over=left,
                           inherited=inherit)


def offline(objects: list[dict]) -> list[Change]:
    """What a stage would create, without a cluster: one Change per rendered object."""
    return [Change(object_ref(obj), "create", "offline plan: not compared with a cluster")
            for obj in objects]


def object_ref(obj: dict) -> str:
    meta = obj.get("metadata", {})
    name = f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
    return f"{obj.get('kind')} {name}"
