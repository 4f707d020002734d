"""`adopt`: take over a site cube-studio's start.sh installed (planned first, confirmed)."""

from __future__ import annotations

from typing import List, Optional

import typer

from cubeinstall.cli.options import (
    OnlyOption,
    SkipOption,
    confirm,
    load_context,
    require_confirmation_possible,
)


def adopt(
    dry_run: bool = typer.Option(False, "--dry-run", help="show the plan, change nothing"),
    only: Optional[List[str]] = OnlyOption,
    skip: Optional[List[str]] = SkipOption,
) -> None:
    """Take over what an earlier install (start.sh, kubectl) made: ownership, re-creations,
    leftovers (these only when the whole site is taken over). Then run `cubeinstall all`."""
    from cubeinstall.run import adopt as adoption
    from cubeinstall.run import runner
    from cubeinstall.run.found import with_found
    from cubeinstall.run.session import changing_run
    from cubeinstall.run.targets import expand

    ctx = load_context(dry_run=dry_run)
    stages = runner.select(ctx.site, only or [], skip or []) if only or skip else None
    if not dry_run:
        require_confirmation_possible("adopt")
    ctx = with_found(ctx, expand(ctx.site, stages or runner.select(ctx.site)))
    result, found = adoption.plan_adoption(ctx, stages)
    for decision in result.decisions:
        runner.report_changes(ctx, decision.stage or "leftover", [adoption.as_change(decision)],
                              name_stage=True)
    rows, changing = adoption.summary(result)
    ctx.out.table("adopt plan", ("decision", "objects"), rows)
    ctx.out.event("adopt-plan", changes=changing,
                  message=f"adopt would change {changing} object(s)")
    if dry_run or changing == 0:
        return
    confirm("Take over the objects above?", "adopt")
    with changing_run(ctx, stages or runner.select(ctx.site)) as journal:  # the site's locks
        changes = adoption.carry_out_all(ctx, found)
        for stage in adoption.stages_touched(result):  # `all` must apply them again
            journal.forget(stage)
    runner.report_changes(ctx, "adopt", changes)
    ctx.out.event("adopt-done", changed=len(changes),
                  message=f"adopt: {len(changes)} object(s) taken over, re-created or removed; "
                          "now run `cubeinstall all`")


def register(app: typer.Typer) -> None:
    app.command()(adopt)
