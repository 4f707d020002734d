"""Commands that plan, apply and report stages: `render`, `plan`, `all`, `stage`,
`preflight`, `status`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import typer

from cubeinstall.cli.options import (
    OPTIONS,
    ClusterOption,
    DryRunOption,
    ForceOption,
    FromOption,
    IgnoreOption,
    JobsOption,
    OnlyOption,
    PruneOption,
    SerialOption,
    SkipOption,
    TrustOption,
    confirm,
    load_context,
    require_confirmation_possible,
)
from cubeinstall.core.errors import ConfigError, CubeError, PreflightError


def render(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="directory for one YAML file per stage (default: stdout); on a site of several clusters one folder per cluster; a file holding Secret data is written mode 0600"),
    only: Optional[List[str]] = OnlyOption,
    redact: bool = typer.Option(False, "--redact", help="write Secrets with placeholder values (REDACTED) instead of the site's secrets, e.g. to review or commit the output"),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="render this cluster's objects only"),
) -> None:
    """Render the Kubernetes objects of every enabled cluster stage (no cluster needed).

    stdout holds only the objects: YAML documents, each stage introduced by a
    `# stage: NAME` comment (`# stage: NAME (cluster CLUSTER)` on a site of several
    clusters, cluster by cluster); warnings go to stderr. With --json, stdout is one
    JSON event a line: {"event": "object", "stage": NAME, "object": {...}} for
    every object, with "cluster" on a site of several (warnings are "warning" events
    in the same stream).
    """
    from cubeinstall.core.files import write_atomically
    from cubeinstall.render.secrets import holds_secret_data, with_placeholders
    from cubeinstall.core.yamlio import dump_documents
    from cubeinstall.run import runner
    from cubeinstall.run.targets import expand
    from cubeinstall.site.stages import STAGE_NAMES
    from cubeinstall.stages.rendered import objects_or_missing, renders_objects

    from cubeinstall.site import stages as registry

    runner.check_stage_names(list(only or []), "--only")
    site = load_context().site
    for name in only or []:
        if not registry.get(name).enabled(site):
            OPTIONS.out.warn(f"{name}: disabled for site {site.site}, not rendered", stage=name,
                             hint=f"enable it in site.yaml: components: {{{name}: {{enabled: true}}}}")
    targets = [target for target in expand(site, runner.select(site, only or []), cluster)
               if renders_objects(target.stage)]
    targets.sort(key=lambda target: site.cluster_names.index(target.cluster))  # cluster by cluster
    for name in only or []:
        if cluster and registry.get(name).enabled(site) and \
                not any(target.stage.name == name for target in targets):
            OPTIONS.out.warn(f"{name}: does not run on cluster {cluster}, not rendered",
                             stage=name, hint="run `cubeinstall stages` for where each stage runs")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    not_rendered: dict[str, None] = {}
    for target in targets:
        name = target.stage.name
        if name in not_rendered:  # said once: the upstream cache serves every cluster
            continue
        objects = objects_or_missing(target.stage, site.for_cluster(target.cluster))
        if isinstance(objects, CubeError):  # upstream files not in the cache
            not_rendered[name] = None
            OPTIONS.out.warn(f"{name}: not rendered: {objects.message}", stage=name, hint=objects.hint)
            continue
        if redact:
            objects = [with_placeholders(obj) for obj in objects]
        if out is None and OPTIONS.json:
            for obj in objects:
                OPTIONS.out.event("object", stage=name, **target.fields, object=obj)
            continue
        text = dump_documents(objects)
        if out is None:
            OPTIONS.out.text(f"# stage: {target.label}\n---\n{text}")
            continue
        folder = out / target.cluster if target.fields else out
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{STAGE_NAMES.index(name) + 1:02d}-{name}.yaml"
        private = not redact and holds_secret_data(objects)
        if private:  # a new file, created 0600, replaces the old one whatever its mode
            write_atomically(path, text)
        else:
            path.write_text(text, encoding="utf-8")
        OPTIONS.out.event("rendered", stage=name, **target.fields, objects=len(objects),
                          path=str(path), secret_data=private,
                          message=f"{path}: {len(objects)} objects"
                                  + (" (holds Secret data: mode 0600)" if private else ""))
    if not_rendered:
        OPTIONS.out.warn(f"{len(not_rendered)} stage(s) need their pinned upstream files first: "
                         f"{', '.join(not_rendered)}; run `cubeinstall bundle fetch` "
                         "(or `cubeinstall bundle load FILE` on an air-gapped machine)")


def plan(
    offline: bool = typer.Option(False, "--offline", help="no cluster, no hosts: what each stage would create"),
    only: Optional[List[str]] = OnlyOption,
    skip: Optional[List[str]] = SkipOption,
    start: Optional[str] = FromOption,
    prune: bool = typer.Option(False, "--prune", help="also show owned objects no longer rendered"),
    cluster: Optional[str] = ClusterOption,
) -> None:
    """Show what each stage would change, without changing anything."""
    ctx = load_context(dry_run=True, prune=prune)
    targets = _targets(ctx, only, skip, start, cluster)
    if not offline:
        ctx = _found(ctx, targets)
    _show_plan(ctx, targets, offline)


def _found(ctx, targets):
    """What the selected stages render from the clusters they run on (run/found.py)."""
    from cubeinstall.run.found import with_found

    return with_found(ctx, targets)


def _targets(ctx, only=None, skip=None, start=None, cluster=None) -> list:
    """The selected stages at each place they run (--cluster: that cluster's only)."""
    from cubeinstall.run import runner
    from cubeinstall.run.targets import expand

    return expand(ctx.site, runner.select(ctx.site, only or [], skip or [], start), cluster)


def _show_plan(ctx, targets, offline: bool = False) -> int:
    """Each target's planned changes and the plan table; returns how many would change."""
    from cubeinstall.run import runner
    from cubeinstall.run.targets import context_for

    rows, changing = [], 0
    runner.share_live_objects(ctx, targets)
    for target in targets:
        changes = runner.plan_stage(context_for(ctx, target), target.stage, offline=offline)
        runner.report_changes(ctx, target.stage.name, changes, name_stage=True,
                              label=target.label, fields=target.fields)
        columns = [{"label": "update"}.get(c.action, c.action) for c in changes]  # a Node's
        counts = {action: columns.count(action)  # labels written update it
                  for action in ("create", "update", "delete", "run", "unchanged")}
        changing += sum(1 for change in changes if change.changes_something)
        rows.append((target.label, *(counts[action] for action in counts)))
        ctx.out.event("stage-plan", stage=target.stage.name, **target.fields, **counts)
    ctx.out.table("plan" + (" (offline)" if offline else ""),
                  ("stage", "create", "update", "delete", "run", "unchanged"), rows)
    return changing


def _confirm_plan(ctx, targets, what: str) -> None:
    """kapp/terraform habit: without --yes, show the plan and ask y/N on a terminal."""
    if ctx.dry_run or OPTIONS.yes:
        return
    if _show_plan(dataclasses.replace(ctx, options=dataclasses.replace(ctx.options, dry_run=True)),
                  targets):
        confirm("Apply the changes above?", what)


def _run(targets, ctx) -> list:
    """Apply the targets (a failure stops the later targets of its cluster: they need what
    it provides), or with --dry-run plan every target, marking those it cannot plan (an
    unreachable cluster or host) instead of stopping; returns those StageResults."""
    from cubeinstall.run import runner
    from cubeinstall.run.session import changing_run

    failed = []
    if ctx.dry_run:  # one runner.run per target: share across them (runner.run does in one)
        runner.share_live_objects(ctx, targets)
        results = []
        for target in targets:
            try:
                results += runner.run(ctx, [target])
            except ConfigError:
                raise  # the site is wrong (exit 2), not a part out of reach
            except CubeError as exc:
                results.append(runner.StageResult(target.stage.name, "not planned",
                                                  message=exc.message, label=target.label))
                failed.append(results[-1])
    else:
        from cubeinstall.run.found import remember

        with changing_run(ctx, [target.stage for target in targets]) as journal:
            remember(journal, ctx.site, targets)
            results = runner.run(ctx, targets, journal)
    ctx.out.table("result", ("stage", "status", "changes", "seconds"),
                  [(r.label, r.status, r.changed if r.status != "not planned" else "-",
                    f"{r.seconds:.1f}") for r in results])
    return failed


def _not_planned(failed: list, total: int) -> str:
    return (f"{len(failed)} of {total} stage(s) could not be planned: "
            + "; ".join(f"{r.label}: {r.message}" for r in failed))


def _raise_for(failed: list, total: int) -> None:
    if failed:
        raise CubeError(_not_planned(failed, total),
                        hint="the result table shows what could be planned; fix the cause "
                             "(often an unreachable cluster or host) and run again")


def run_all(
    dry_run: bool = DryRunOption,
    only: Optional[List[str]] = OnlyOption,
    skip: Optional[List[str]] = SkipOption,
    start: Optional[str] = FromOption,
    trust_new_hosts: bool = TrustOption,
    prune: bool = PruneOption,
    force: bool = ForceOption,
    ignore: Optional[List[str]] = IgnoreOption,
    jobs: int = JobsOption,
    serial: bool = SerialOption,
    cluster: Optional[str] = ClusterOption,
) -> None:
    """Bring the whole site to its desired state (resumes after a failure); independent
    stages run at once (--jobs), each after the stages it needs."""
    from cubeinstall.run.preflight import run_preflight

    ctx = load_context(dry_run=dry_run, trust_new_hosts=trust_new_hosts, prune=prune, force=force,
                       jobs=1 if serial else jobs)
    targets = _targets(ctx, only, skip, start, cluster)
    if not dry_run:
        require_confirmation_possible("all")
    ctx = _found(ctx, targets)
    ctx.out.event("preflight-start", message="preflight checks")
    preflight_failed = None
    try:
        run_preflight(ctx, targets, ignore or [], cluster)
    except PreflightError as exc:
        if not dry_run:
            raise
        preflight_failed = exc  # a dry run goes on: it shows what it can reach
        ctx.out.warn("preflight failed (see above); --dry-run still plans every stage it "
                     "can reach")
    _confirm_plan(ctx, targets, "all")
    failed = _run(targets, ctx)
    if preflight_failed is not None:
        if failed:  # said, not lost behind preflight's exit code
            ctx.out.warn(_not_planned(failed, len(targets)))
        raise preflight_failed
    _raise_for(failed, len(targets))


def preflight(
    only: Optional[List[str]] = OnlyOption,
    skip: Optional[List[str]] = SkipOption,
    start: Optional[str] = FromOption,
    trust_new_hosts: bool = TrustOption,
    ignore: Optional[List[str]] = IgnoreOption,
    cluster: Optional[str] = ClusterOption,
) -> None:
    """Read-only checks of each cluster, the hosts, registry and database (exit 3 on failure)."""
    from cubeinstall.run.preflight import run_preflight

    ctx = load_context(dry_run=True, trust_new_hosts=trust_new_hosts)
    findings = run_preflight(ctx, _targets(ctx, only, skip, start, cluster), ignore or [], cluster)
    ctx.out.table("preflight", ("check", "grade", "finding"),
                  [(f.check, f.grade, f.message) for f in findings])


def stage(
    name: str = typer.Argument(..., help="stage name (see `cubeinstall stages`)"),
    dry_run: bool = DryRunOption,
    trust_new_hosts: bool = TrustOption,
    prune: bool = PruneOption,
    force: bool = ForceOption,
    cluster: Optional[str] = ClusterOption,
) -> None:
    """Run one stage (a stage the site disables is refused), on each cluster it runs on."""
    from cubeinstall.run import runner
    from cubeinstall.site import stages as registry

    runner.check_stage_names([name], "stage")
    ctx = load_context(dry_run=dry_run, trust_new_hosts=trust_new_hosts, prune=prune, force=force)
    selected = registry.get(name)
    if not selected.enabled(ctx.site):
        raise ConfigError(f"stage {name} is disabled for site {ctx.site.site}",
                          hint=f"enable it in site.yaml: components: {{{name}: {{enabled: true}}}}")
    from cubeinstall.run.targets import expand

    targets = expand(ctx.site, [selected], cluster)
    if not targets:
        raise ConfigError(f"stage {name} does not run on cluster {cluster}",
                          hint="run `cubeinstall stages` for where each stage runs")
    if not dry_run:
        require_confirmation_possible(f"stage {name}")
    ctx = _found(ctx, targets)
    _confirm_plan(ctx, targets, f"stage {name}")
    _raise_for(_run(targets, ctx), len(targets))


def status(
    live: bool = typer.Option(False, "--live", help="also compare every stage with the live cluster, hosts and databases (read-only)"),
    cluster: Optional[str] = ClusterOption,
) -> None:
    """Per stage (and cluster): last result, whether its inputs changed since, and (--live)
    pending changes."""
    from cubeinstall.run import runner
    from cubeinstall.run.fingerprint import fingerprint
    from cubeinstall.run.journal import Journal
    from cubeinstall.run.targets import context_for

    ctx = load_context(dry_run=True)
    journal = Journal.load(ctx.site.site)
    targets = _targets(ctx, cluster=cluster)
    if live:  # what `all` finds first: its inputs and its plan are compared with those
        ctx = _found(ctx, targets)
    else:  # what the latest runs found, asking no cluster
        from cubeinstall.run.found import with_remembered

        ctx = with_remembered(ctx, journal)
    rows, unreached = [], []
    for target in targets:
        stage, target_ctx = target.stage, context_for(ctx, target)
        record = journal.stages.get(target.key)
        inputs = "never run"
        if record:
            current = fingerprint(stage, target_ctx.site,
                                  runner.stage_objects(stage, target_ctx.site))
            inputs = "unchanged" if current == record.fingerprint else "changed"
        pending = ""
        if live:
            try:
                changes = runner.plan_stage(target_ctx, stage, offline=False)
                pending = str(sum(1 for change in changes if change.changes_something))
            except CubeError as exc:  # mark it and go on: show what can be reached
                pending = "not reached"
                unreached.append(f"{target.label}: {exc.message}")
        finished = _when(record.finished) if record and record.finished else ""
        result = record.status if record else "-"
        ctx.out.event("stage-status", stage=stage.name, **target.fields, result=result,
                      inputs=inputs, finished=finished, pending=pending or None,
                      detail=record.message if record else "")
        rows.append((target.label, result, finished, inputs, pending))
    columns = ("stage", "last result", "finished", "inputs since", "pending changes")
    ctx.out.table(f"status of site {ctx.site.site} ({journal.path})", columns if live else columns[:4],
                  [row if live else row[:4] for row in rows])
    if unreached:
        raise CubeError(f"{len(unreached)} of {len(rows)} stage(s) could not be compared with "
                        "the live site: " + "; ".join(unreached),
                        hint="the table shows the others; fix the cause (often an unreachable "
                             "cluster or host) and run again")


def _when(timestamp: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def register(app: typer.Typer) -> None:
    app.command()(render)
    app.command()(plan)
    app.command(name="all")(run_all)
    app.command()(stage)
    app.command()(preflight)
    app.command()(status)
