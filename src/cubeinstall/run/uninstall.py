"""Uninstall: plan the removal, then remove in reverse stage order.

Each stage removes itself (its ``remove``, stages/contract.py): what cubeinstall
created in the cluster is deleted by its ownership labels (the engine never
touches what it does not own, and keeps PVs with Retain). Data stays unless
asked: the databases are dropped only with ``purge``; the shared storage and
/data/k8s are never wiped; node files are given back from their backups only
with ``restore_node_files``. Images stay in the registry. A stage that runs on
every cluster is removed from each (run/targets.py), newest target first. Objects a
stage took over from another (``took_over_from``: ingress from gateway) go with their new
owner, whichever of the two labels they still carry. What is kept, and why, is said.
"""

from __future__ import annotations

from dataclasses import replace

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.run.targets import Target, context_for
from cubeinstall.stages import load


def stage_removal(ctx: RunContext, target: Target, *, purge: bool,
                  restore_node_files: bool) -> list[Change]:
    """What removing one target does (ctx.dry_run: only say it)."""
    return load(target.stage).remove(context_for(ctx, target), purge, restore_node_files)


def plan_removal(ctx: RunContext, targets: list[Target], *, purge: bool,
                 restore_node_files: bool) -> list[tuple[Target, list[Change]]]:
    planning = replace(ctx, options=replace(ctx.options, dry_run=True))
    return [(target, stage_removal(planning, target, purge=purge,
                                   restore_node_files=restore_node_files))
            for target in reversed(targets)]
