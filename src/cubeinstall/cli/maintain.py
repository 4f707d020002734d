"""`uninstall` (planned first, confirmed) and `upgrade-db`."""

from __future__ import annotations

from typing import List, Optional

import typer

from cubeinstall.cli.options import (
    ClusterOption,
    OnlyOption,
    SkipOption,
    TrustOption,
    confirm,
    load_context,
)


# what uninstall keeps (data, node files, objects another stage renders now) is said too
KEPT = ("skip",)


def uninstall(
    only: Optional[List[str]] = OnlyOption,
    skip: Optional[List[str]] = SkipOption,
    purge: bool = typer.Option(False, "--purge", help="also delete data: PVCs, non-Retain PVs, the platform's databases"),
    restore_node_files: bool = typer.Option(False, "--restore-node-files", help="give the node files cubeinstall edited (fstab, daemon.json, containerd's config.toml and hosts.toml) back from their backups"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be removed, remove nothing"),
    trust_new_hosts: bool = TrustOption,
    cluster: Optional[str] = ClusterOption,
) -> None:
    """Remove what cubeinstall installed, newest stage first; data stays unless --purge."""
    from cubeinstall.run import runner
    from cubeinstall.run.session import changing_run
    from cubeinstall.run.targets import expand
    from cubeinstall.run.uninstall import plan_removal, stage_removal

    ctx = load_context(dry_run=dry_run, trust_new_hosts=trust_new_hosts)
    targets = expand(ctx.site, runner.select(ctx.site, only or [], skip or []), cluster)
    plan = plan_removal(ctx, targets, purge=purge, restore_node_files=restore_node_files)
    for target, changes in plan:
        runner.report_changes(ctx, target.stage.name, changes, fields=target.fields,
                              shown=KEPT)
    deletions = sum(1 for _, changes in plan for c in changes if c.changes_something)
    ctx.out.event("uninstall-plan", changes=deletions,
                  message=f"uninstall would change {deletions} object(s)/file(s)/database(s)")
    if dry_run or deletions == 0:
        return
    confirm("Remove all of the above?", "uninstall")
    with changing_run(ctx, [target.stage for target in targets]) as journal:
        for target in reversed(targets):
            changes = stage_removal(ctx, target, purge=purge, restore_node_files=restore_node_files)
            runner.report_changes(ctx, target.stage.name, changes, fields=target.fields,
                                  shown=KEPT)
            journal.forget(target.key)
            ctx.out.event("stage-removed", stage=target.stage.name, **target.fields,
                          changed=sum(1 for c in changes if c.changes_something),
                          message=f"✖ {target.label}: removed")


def upgrade_db(
    dry_run: bool = typer.Option(False, "--dry-run", help="count the rows each back-fill would change"),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, max=100_000, help="rows per committed batch"),
) -> None:
    """Fill the columns an upgrade added with their defaults (resumable: each batch is committed)."""
    from cubeinstall.db.backfill import run_backfills
    from cubeinstall.run import runner

    ctx = load_context(dry_run=dry_run)
    changes = run_backfills(ctx, dry_run=dry_run, batch_size=batch_size)
    runner.report_changes(ctx, "upgrade-db", changes)
    changed = sum(1 for change in changes if change.changes_something)
    ctx.out.event("upgrade-db-done", changed=changed,
                  message=f"upgrade-db: {runner.describe_count(changed, dry_run)}")


def register(app: typer.Typer) -> None:
    app.command()(uninstall)
    app.command(name="upgrade-db")(upgrade_db)
