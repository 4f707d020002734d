"""The plan/apply pair every node stage exposes, built from its per-host work."""

from __future__ import annotations

from collections.abc import Callable

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.site.model import Node, Site

Work = Callable[["Host", Site], None]  # noqa: F821 - cubeinstall.remote.host.Host


def node_stage(stage: str, work: Work,
               nodes: Callable[[Site], tuple[Node, ...]] = lambda site: site.nodes,
               check: Callable[[Site], None] | None = None):
    """(plan, apply) for a stage that runs ``work(host, site)`` on ``nodes(site)``.

    plan gathers facts and reports diffs, writing nothing; apply writes (or
    plans, under --dry-run). ``check(site)`` runs first, before any connection,
    and raises ConfigError for values the stage cannot use.
    """

    def run(ctx: RunContext, write: bool) -> list[Change]:
        from cubeinstall.remote.parallel import run_on_nodes

        site = ctx.site
        if check is not None:
            check(site)
        return run_on_nodes(ctx, stage, nodes(site), lambda host: work(host, site), write=write)

    def plan(ctx: RunContext) -> list[Change]:
        return run(ctx, write=False)

    def apply(ctx: RunContext) -> list[Change]:
        return run(ctx, write=not ctx.dry_run)

    return plan, apply
