"""Uninstall: plan the removal, then remove in reverse stage order.

Each stage removes itself (its ``remove``, stages/contract.py): what cubeinstall
created in the cluster is deleted by its ownership labels (the engine never
touches what it does not own, and keeps PVs with Retain). Data stays unless
asked: the databases are dropped only with ``purge``; the shared storage and
/data/k8s are never wiped; node files are given back from their backups only
with ``restore_node_files``. Images stay in the registry.
"""

from __future__ import annotations

from dataclasses import replace

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.site.stages import Stage
from cubeinstall.stages import load


def stage_removal(ctx: RunContext, stage: Stage, *, purge: bool,
                  restore_node_files: bool) -> list[Change]:
    """What removing one stage does (ctx.dry_run: only say it)."""
    return load(stage).remove(ctx, purge, restore_node_files)


def plan_removal(ctx: RunContext, stages: list[Stage], *, purge: bool,
                 restore_node_files: bool) -> dict[str, list[Change]]:
    planning = replace(ctx, options=replace(ctx.options, dry_run=True))
    return {stage.name: stage_removal(planning, stage, purge=purge,
                                      restore_node_files=restore_node_files)
            for stage in reversed(stages)}
