"""Uninstall: plan the removal, then remove in reverse stage order.

What cubeinstall created in the cluster is deleted by its ownership labels
(the engine never touches what it does not own, and keeps PVs with Retain).
Data stays unless asked: the databases are dropped only with ``purge``; the
shared storage and /data/k8s are never wiped; node files are given back from
their backups only with ``restore_node_files``. Images stay in the registry.
"""

from __future__ import annotations

from dataclasses import replace

from cubeinstall.stages.base import Change, RunContext
from cubeinstall.stages.registry import Layer, Stage


def stage_removal(ctx: RunContext, stage: Stage, *, purge: bool,
                  restore_node_files: bool) -> list[Change]:
    """What removing one stage does (ctx.dry_run: only say it)."""
    write = not ctx.dry_run
    if stage.layer is Layer.CLUSTER:
        from cubeinstall.stages import cluster

        return cluster.uninstall(ctx, stage.name, purge=purge)
    if stage.layer is Layer.DATABASE:
        if not purge:
            return [Change(stage.name, "skip", "databases kept (uninstall --purge drops them)")]
        from cubeinstall.db.databases import purge as drop_databases

        return drop_databases(ctx, write=write, deadline_seconds=ctx.site.timeouts.object_seconds)
    if stage.layer is Layer.REGISTRY:
        return [Change(stage.name, "skip", "mirrored images stay in the registry")]
    if stage.name == "node-prep" and restore_node_files:  # once for all node stages
        from cubeinstall.remote.restore import restore_node_files as restore

        return restore(ctx, write)
    return [Change(stage.name, "skip", "node changes kept (uninstall --restore-node-files "
                                       "gives edited files back; /data/k8s is never wiped)")]


def plan_removal(ctx: RunContext, stages: list[Stage], *, purge: bool,
                 restore_node_files: bool) -> dict[str, list[Change]]:
    planning = replace(ctx, options=replace(ctx.options, dry_run=True))
    return {stage.name: stage_removal(planning, stage, purge=purge,
                                      restore_node_files=restore_node_files)
            for stage in reversed(stages)}
