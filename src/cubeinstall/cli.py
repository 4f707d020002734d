"""The command line: parse flags, call the runner, map errors to exit codes.

Heavy libraries (kubernetes, paramiko, pymysql) are imported by the engines
inside the commands that need them, never here: `cubeinstall --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from cubeinstall import __version__
from cubeinstall.cli_context import DEFAULT_CONFIG, OPTIONS, load_context
from cubeinstall.errors import ConfigError, CubeError, ExitCode

app = typer.Typer(
    name="cubeinstall",
    help="Install the cube-studio ML platform on Kubernetes from one typed site.yaml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigOption = typer.Option(None, "--config", "-c", help="site file (default: ./site.yaml)")


@app.callback(invoke_without_command=True)
def _global(
    typer_context: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="site file (default: ./site.yaml)"),
    kubeconfig: Optional[Path] = typer.Option(None, help="kubeconfig of the platform cluster (overrides site.yaml)"),
    context: Optional[str] = typer.Option(None, help="kubeconfig context of the platform cluster"),
    json_output: bool = typer.Option(False, "--json", help="machine-readable events, one JSON object a line"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logs and unchanged objects"),
    no_color: bool = typer.Option(False, "--no-color", help="plain text output"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask before changing or deleting"),
    version: bool = typer.Option(False, "--version", help="print the version and exit", is_eager=True),
) -> None:
    if version:
        typer.echo(f"cubeinstall {__version__}")
        raise typer.Exit()
    if typer_context.invoked_subcommand is None:
        typer.echo(typer_context.get_help())
        raise typer.Exit(ExitCode.CONFIG)
    OPTIONS.config = config or DEFAULT_CONFIG
    OPTIONS.kubeconfig, OPTIONS.context = kubeconfig, context
    OPTIONS.json, OPTIONS.verbose, OPTIONS.color, OPTIONS.yes = json_output, verbose, not no_color, yes
    OPTIONS.refresh_output()


def _use_config(config: Optional[Path]) -> None:
    """Commands accept --config after their name too: `cubeinstall plan --config x`."""
    if config is not None:
        OPTIONS.config = config


# --- selection flags shared by plan/all ------------------------------------------

OnlyOption = typer.Option(None, "--only", help="run only these stages (repeatable)")
SkipOption = typer.Option(None, "--skip", help="skip these stages (repeatable)")
FromOption = typer.Option(None, "--from", help="start at this stage")
IgnoreOption = typer.Option(None, "--ignore", help="preflight check ID to accept failing (repeatable)")
TrustOption = typer.Option(False, "--trust-new-hosts", help="accept and record SSH host keys not yet in known_hosts")
PruneOption = typer.Option(False, "--prune", help="delete owned objects no longer rendered")
ForceOption = typer.Option(False, "--force", help="re-run stages whose inputs are unchanged, and take over fields another field manager owns")


@app.command()
def stages(config: Optional[Path] = ConfigOption) -> None:
    """List every stage in install order, and whether this site enables it."""
    from cubeinstall.stages.registry import STAGES

    _use_config(config)
    site = load_context().site if OPTIONS.config.exists() else None
    rows = []
    for index, stage in enumerate(STAGES, 1):
        if site is None:
            enabled = "default on" if stage.default_enabled else "default off"
        else:
            enabled = "yes" if stage.enabled(site) else "no"
        rows.append((index, stage.name, stage.layer.value, enabled, stage.summary))
        OPTIONS.out.event("stage", order=index, name=stage.name, layer=stage.layer.value,
                          enabled=enabled, summary=stage.summary)
    OPTIONS.out.table("stages", ("#", "stage", "layer", "enabled", "summary"), rows)


@app.command()
def init(
    path: Path = typer.Argument(Path("site.yaml"), help="where to write the example site"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write a commented example site.yaml to start from."""
    from importlib.resources import files

    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; nothing was written", hint="pass --force to overwrite it")
    text = files("cubeinstall").joinpath("data/site.example.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    OPTIONS.out.event("written", path=str(path), message=f"wrote {path}: edit it, then run `cubeinstall validate -c {path}`")


@app.command()
def validate(config: Optional[Path] = ConfigOption) -> None:
    """Check the site file: every field, reference and cross-field rule."""
    from cubeinstall.stages.registry import STAGES

    _use_config(config)
    site = load_context().site
    enabled = [stage.name for stage in STAGES if stage.enabled(site)]
    OPTIONS.out.event(
        "valid", site=site.site, nodes=len(site.nodes), stages=enabled,
        message=f"{OPTIONS.config}: site {site.site} is valid — {len(site.nodes)} nodes, "
                f"{len(enabled)} of {len(STAGES)} stages enabled",
    )


@app.command()
def render(
    config: Optional[Path] = ConfigOption,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="directory for one YAML file per stage (default: stdout)"),
    only: Optional[List[str]] = OnlyOption,
) -> None:
    """Render the Kubernetes objects of every enabled cluster stage (no cluster needed)."""
    from cubeinstall import runner
    from cubeinstall.render import each_stage
    from cubeinstall.stages.registry import STAGE_NAMES
    from cubeinstall.yamlio import dump_documents

    _use_config(config)
    runner.check_stage_names(list(only or []), "--only")
    site = load_context().site
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    not_rendered = []
    for name, objects in each_stage(site, only or []):
        if isinstance(objects, CubeError):  # upstream files not in the cache
            not_rendered.append(name)
            OPTIONS.out.warn(f"{name}: not rendered: {objects.message}", stage=name, hint=objects.hint)
            continue
        text = dump_documents(objects)
        if out is None:
            OPTIONS.out.text(f"# stage: {name}\n---\n{text}")
            continue
        path = out / f"{STAGE_NAMES.index(name) + 1:02d}-{name}.yaml"
        path.write_text(text, encoding="utf-8")
        OPTIONS.out.event("rendered", stage=name, objects=len(objects), path=str(path),
                          message=f"{path}: {len(objects)} objects")
    if not_rendered:
        OPTIONS.out.warn(f"{len(not_rendered)} stage(s) need their pinned upstream files first: "
                         f"{', '.join(not_rendered)}; run `cubeinstall bundle fetch` "
                         "(or `cubeinstall bundle load FILE` on an air-gapped machine)")


@app.command()
def plan(
    config: Optional[Path] = ConfigOption,
    offline: bool = typer.Option(False, "--offline", help="no cluster, no hosts: what each stage would create"),
    only: Optional[List[str]] = OnlyOption,
    skip: Optional[List[str]] = SkipOption,
    start: Optional[str] = FromOption,
    prune: bool = typer.Option(False, "--prune", help="also show owned objects no longer rendered"),
) -> None:
    """Show what each stage would change, without changing anything."""
    from cubeinstall import runner

    _use_config(config)
    ctx = load_context(dry_run=True, prune=prune)
    selected = runner.select(ctx.site, only or [], skip or [], start)
    rows = []
    for stage in selected:
        changes = runner.plan_stage(ctx, stage, offline=offline)
        runner.report_changes(ctx, stage.name, changes)
        counts = {action: sum(1 for c in changes if c.action == action)
                  for action in ("create", "update", "delete", "run", "unchanged")}
        rows.append((stage.name, *(counts[action] for action in counts)))
        ctx.out.event("stage-plan", stage=stage.name, **counts)
    ctx.out.table("plan" + (" (offline)" if offline else ""),
                  ("stage", "create", "update", "delete", "run", "unchanged"), rows)


def _run(stages_to_run, ctx) -> None:
    from cubeinstall import runner
    from cubeinstall.state.session import changing_run

    if ctx.dry_run:
        results = runner.run(ctx, stages_to_run)
    else:
        with changing_run(ctx, stages_to_run) as journal:
            results = runner.run(ctx, stages_to_run, journal)
    ctx.out.table("result", ("stage", "status", "changes", "seconds"),
                  [(r.stage, r.status, r.changed, f"{r.seconds:.1f}") for r in results])


@app.command(name="all")
def run_all(
    config: Optional[Path] = ConfigOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="plan every stage, change nothing"),
    only: Optional[List[str]] = OnlyOption,
    skip: Optional[List[str]] = SkipOption,
    start: Optional[str] = FromOption,
    trust_new_hosts: bool = TrustOption,
    prune: bool = PruneOption,
    force: bool = ForceOption,
    ignore: Optional[List[str]] = IgnoreOption,
) -> None:
    """Bring the whole site to its desired state, stage by stage (resumes after a failure)."""
    from cubeinstall import runner
    from cubeinstall.preflight import run_preflight

    _use_config(config)
    ctx = load_context(dry_run=dry_run, trust_new_hosts=trust_new_hosts, prune=prune, force=force)
    selected = runner.select(ctx.site, only or [], skip or [], start)
    ctx.out.event("preflight-start", message="preflight checks")
    run_preflight(ctx, selected, ignore or [])
    _run(selected, ctx)


@app.command()
def preflight(
    config: Optional[Path] = ConfigOption,
    only: Optional[List[str]] = OnlyOption,
    skip: Optional[List[str]] = SkipOption,
    start: Optional[str] = FromOption,
    trust_new_hosts: bool = TrustOption,
    ignore: Optional[List[str]] = IgnoreOption,
) -> None:
    """Read-only checks of cluster, hosts, registry and database (exit 3 on failure)."""
    from cubeinstall import runner
    from cubeinstall.preflight import run_preflight

    _use_config(config)
    ctx = load_context(dry_run=True, trust_new_hosts=trust_new_hosts)
    findings = run_preflight(ctx, runner.select(ctx.site, only or [], skip or [], start), ignore or [])
    ctx.out.table("preflight", ("check", "grade", "finding"),
                  [(f.check, f.grade, f.message) for f in findings])


@app.command()
def stage(
    name: str = typer.Argument(..., help="stage name (see `cubeinstall stages`)"),
    config: Optional[Path] = ConfigOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="plan the stage, change nothing"),
    trust_new_hosts: bool = TrustOption,
    prune: bool = PruneOption,
    force: bool = ForceOption,
) -> None:
    """Run one stage (a stage the site disables is refused)."""
    from cubeinstall import runner
    from cubeinstall.stages import registry

    _use_config(config)
    runner.check_stage_names([name], "stage")
    ctx = load_context(dry_run=dry_run, trust_new_hosts=trust_new_hosts, prune=prune, force=force)
    selected = registry.get(name)
    if not selected.enabled(ctx.site):
        raise ConfigError(f"stage {name} is disabled for site {ctx.site.site}",
                          hint=f"enable it in site.yaml: components: {{{name}: {{enabled: true}}}}")
    _run([selected], ctx)


@app.command()
def status(
    config: Optional[Path] = ConfigOption,
    live: bool = typer.Option(False, "--live", help="also compare every stage with the live cluster, hosts and databases (read-only)"),
) -> None:
    """Per stage: last result, whether its inputs changed since, and (--live) pending changes."""
    from cubeinstall import runner
    from cubeinstall.state.fingerprint import fingerprint
    from cubeinstall.state.journal import Journal

    _use_config(config)
    ctx = load_context(dry_run=True)
    journal = Journal.load(ctx.site.site)
    rows = []
    for stage in runner.select(ctx.site):
        record = journal.stages.get(stage.name)
        inputs = "never run"
        if record:
            current = fingerprint(stage, ctx.site, runner.stage_objects(stage, ctx.site))
            inputs = "unchanged" if current == record.fingerprint else "changed"
        pending = ""
        if live:
            changes = runner.plan_stage(ctx, stage, offline=False)
            pending = str(sum(1 for change in changes if change.changes_something))
        finished = _when(record.finished) if record and record.finished else ""
        result = record.status if record else "-"
        ctx.out.event("stage-status", stage=stage.name, result=result, inputs=inputs,
                      finished=finished, pending=pending or None,
                      detail=record.message if record else "")
        rows.append((stage.name, result, finished, inputs, pending))
    columns = ("stage", "last result", "finished", "inputs since", "pending changes")
    ctx.out.table(f"status of site {ctx.site.site} ({journal.path})", columns if live else columns[:4],
                  [row if live else row[:4] for row in rows])


@app.command()
def uninstall(
    config: Optional[Path] = ConfigOption,
    only: Optional[List[str]] = OnlyOption,
    skip: Optional[List[str]] = SkipOption,
    purge: bool = typer.Option(False, "--purge", help="also delete data: PVCs, non-Retain PVs, the platform's databases"),
    restore_node_files: bool = typer.Option(False, "--restore-node-files", help="give fstab and daemon.json back from their backups"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be removed, remove nothing"),
    trust_new_hosts: bool = TrustOption,
) -> None:
    """Remove what cubeinstall installed, newest stage first; data stays unless --purge."""
    from cubeinstall import runner
    from cubeinstall.state.session import changing_run
    from cubeinstall.uninstall import plan_removal, stage_removal

    _use_config(config)
    ctx = load_context(dry_run=dry_run, trust_new_hosts=trust_new_hosts)
    selected = runner.select(ctx.site, only or [], skip or [])
    plan = plan_removal(ctx, selected, purge=purge, restore_node_files=restore_node_files)
    for name, changes in plan.items():
        runner.report_changes(ctx, name, changes)
    deletions = sum(1 for changes in plan.values() for c in changes if c.changes_something)
    ctx.out.event("uninstall-plan", changes=deletions,
                  message=f"uninstall would change {deletions} object(s)/file(s)/database(s)")
    if dry_run or deletions == 0:
        return
    if not OPTIONS.yes:
        if not sys.stdin.isatty():
            raise ConfigError("uninstall needs confirmation; nothing was removed",
                              hint="review the plan above, then run again with --yes")
        typer.confirm("Remove all of the above?", abort=True)
    with changing_run(ctx, selected) as journal:
        for stage in reversed(selected):
            changes = stage_removal(ctx, stage, purge=purge, restore_node_files=restore_node_files)
            runner.report_changes(ctx, stage.name, changes)
            journal.forget(stage.name)
            ctx.out.event("stage-removed", stage=stage.name,
                          changed=sum(1 for c in changes if c.changes_something),
                          message=f"✖ {stage.name}: removed")


def _when(timestamp: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


@app.command(name="upgrade-db")
def upgrade_db(
    config: Optional[Path] = ConfigOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="count the rows each back-fill would change"),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, max=100_000, help="rows per committed batch"),
) -> None:
    """Fill the columns an upgrade added with their defaults (resumable: each batch is committed)."""
    from cubeinstall import runner
    from cubeinstall.db.backfill import run_backfills

    _use_config(config)
    ctx = load_context(dry_run=dry_run)
    changes = run_backfills(ctx, dry_run=dry_run, batch_size=batch_size)
    runner.report_changes(ctx, "upgrade-db", changes)
    changed = sum(1 for change in changes if change.changes_something)
    ctx.out.event("upgrade-db-done", changed=changed,
                  message=f"upgrade-db: {runner.describe_count(changed, dry_run)}")


def _register_sub_apps() -> None:
    from cubeinstall.bundle_cli import app as bundle_app
    from cubeinstall.images.cli import app as images_app

    app.add_typer(images_app, name="images", help="Image inventory, mirror, offline save/load, verify.")
    app.add_typer(bundle_app, name="bundle", help="Pinned upstream files: fetch, and offline bundles (create, load).")


_register_sub_apps()


def main() -> None:
    """Entry point: one place maps every error to its exit code."""
    try:
        code = app(standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        code = ExitCode.INTERRUPTED
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # usage errors: unknown command, bad flag
        exc.show()
        sys.exit(ExitCode.CONFIG)
    except CubeError as exc:
        fields = {"hint": exc.hint, "exit_code": exc.exit_code}
        if isinstance(exc, ConfigError):
            fields["problems"] = exc.problems
        OPTIONS.out.error(str(exc), **fields)
        sys.exit(exc.exit_code)
    if code == ExitCode.INTERRUPTED:  # typer also turns Ctrl-C into exit code 130
        OPTIONS.out.error("interrupted; re-run the same command to continue")
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
