"""Stage `databases`: the platform's MySQL databases and optional application user.

PLATFORM-FACTS item 8: kubeflow, mlpipeline, katib, metadb, cachedb with
utf8 / utf8_general_ci unless the site says otherwise. The engine is
``cubeinstall.db.databases``; this module only chooses deadlines and turns
engine errors into StageFailed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cubeinstall.core.change import Change
from cubeinstall.core.errors import CubeError, StageFailed

if TYPE_CHECKING:
    from cubeinstall.core.context import RunContext
    from cubeinstall.site.model import Site

STAGE = "databases"
PLAN_DEADLINE_SECONDS = 30.0  # a plan reports, it does not wait out a slow start


def plan(ctx: "RunContext") -> list[Change]:
    from cubeinstall.db.connection import MySQLUnreachable
    from cubeinstall.db.portforward import ServiceMissing

    deadline = min(PLAN_DEADLINE_SECONDS, ctx.site.timeouts.object_seconds)
    try:
        return _run(ctx, write=False, deadline=deadline)
    except StageFailed as exc:
        cause = exc.__cause__
        if not (isinstance(cause, MySQLUnreachable)
                and isinstance(cause.forward_failure, ServiceMissing)):
            raise
    # In-cluster MySQL is not deployed yet (the mysql stage runs first): all is to create.
    return _from_scratch(ctx.site, "MySQL not deployed yet")


def describe(site: "Site") -> list[Change]:
    """Offline plan: every statement a server without any of it would get."""
    return _from_scratch(site, "offline: not compared with the server")


def _from_scratch(site: "Site", why: str) -> list[Change]:
    from dataclasses import replace

    from cubeinstall.db.databases import actions_from_scratch

    return [replace(action.change, detail=f"{action.change.detail} ({why})")
            for action in actions_from_scratch(site)]


def apply(ctx: "RunContext") -> list[Change]:
    return _run(ctx, write=True, deadline=ctx.site.timeouts.object_seconds)


def remove(ctx: "RunContext", purge: bool, restore_node_files: bool) -> list[Change]:
    """The databases and the application user are data: dropped only with --purge."""
    if not purge:
        return [Change(STAGE, "skip", "databases kept (uninstall --purge drops them)")]
    from cubeinstall.db.databases import purge as drop_databases

    return drop_databases(ctx, write=not ctx.dry_run,
                          deadline_seconds=ctx.site.timeouts.object_seconds)


def _run(ctx: "RunContext", *, write: bool, deadline: float) -> list[Change]:
    from cubeinstall.db.databases import reconcile

    try:
        return reconcile(ctx, write=write, deadline_seconds=deadline)
    except StageFailed:
        raise
    except CubeError as exc:
        raise StageFailed(STAGE, exc.message, exc.hint) from exc
