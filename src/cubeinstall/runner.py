"""Walk the stage registry: select, plan, apply, report.

The CLI is a thin layer over this module. A stage either returns its changes
or raises; the run stops at the first failed stage, because every later stage
may need what it provides.
"""

from __future__ import annotations

import difflib
import importlib
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

from cubeinstall.errors import ConfigError, CubeError, NotImplementedStage, StageFailed
from cubeinstall.site.model import Site
from cubeinstall.stages import registry
from cubeinstall.stages.base import Change, RunContext
from cubeinstall.stages.registry import Stage

if TYPE_CHECKING:
    from cubeinstall.state.journal import Journal


@dataclass
class StageResult:
    stage: str
    status: str  # "ok", "failed", "skipped"
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""

    @property
    def changed(self) -> int:
        return sum(1 for change in self.changes if change.changes_something)


def check_stage_names(names: list[str], option: str) -> None:
    for name in names:
        if name not in registry.STAGE_NAMES:
            close = difflib.get_close_matches(name, registry.STAGE_NAMES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "run `cubeinstall stages` for the list"
            raise ConfigError(f"{option}: unknown stage {name!r}", hint=hint)


def select(site: Site, only: list[str] = (), skip: list[str] = (),
           start: str | None = None) -> list[Stage]:
    """The stages to run, in registry order: enabled, then --from/--only/--skip."""
    check_stage_names(list(only), "--only")
    check_stage_names(list(skip), "--skip")
    if start:
        check_stage_names([start], "--from")
    names = list(registry.STAGE_NAMES)
    if start:
        names = names[names.index(start):]
    if only:
        names = [name for name in names if name in only]
    names = [name for name in names if name not in skip]
    return [registry.get(name) for name in names if registry.get(name).enabled(site)]


def stage_module(stage: Stage) -> ModuleType:
    try:
        return importlib.import_module(f"cubeinstall.stages.{stage.module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"cubeinstall.stages.{stage.module}":
            raise NotImplementedStage(stage.name, f"no module cubeinstall.stages.{stage.module}") from None
        raise


def plan_stage(ctx: RunContext, stage: Stage, offline: bool) -> list[Change]:
    from cubeinstall.stages import cluster

    from cubeinstall.upstream.cache import NotFetched

    module = stage_module(stage)
    if offline:
        if hasattr(module, "describe"):
            return module.describe(ctx.site)
        if hasattr(module, "render"):
            try:
                return cluster.offline(stage.name, rendered(module, stage, ctx.site))
            except NotFetched as missing:
                return [Change(stage.name, "run", f"{missing.message}; {missing.hint}")]
        return [Change(stage.name, "run", stage.summary)]
    if hasattr(module, "plan"):
        return module.plan(ctx)
    return cluster.plan(ctx, stage.name, rendered(module, stage, ctx.site))


def apply_stage(ctx: RunContext, stage: Stage, objects: list[dict] | None = None) -> list[Change]:
    from cubeinstall.stages import cluster

    module = stage_module(stage)
    if hasattr(module, "apply"):
        return module.apply(ctx)
    if objects is None:
        objects = rendered(module, stage, ctx.site)
    return cluster.apply(ctx, stage.name, objects)


def rendered(module: ModuleType, stage: Stage, site: Site) -> list[dict]:
    """A stage's objects as they will be applied (images pointed at the site registry)."""
    from cubeinstall.render import finalize

    return finalize(site, module.render(site))


def run(ctx: RunContext, stages: list[Stage], journal: "Journal | None" = None) -> list[StageResult]:
    """Apply (or with --dry-run, plan) each stage in order; stop at the first failure.

    With a journal, a stage that finished ok from the same inputs is skipped
    (unless --force), and every stage's start and end are recorded, so an
    interrupted run resumes where it stopped.
    """
    results: list[StageResult] = []
    for stage in stages:
        started = time.monotonic()
        try:
            result = _run_stage(ctx, stage, journal)
        except CubeError as exc:
            failure = exc if isinstance(exc, StageFailed) else StageFailed(stage.name, str(exc.message), exc.hint)
            if journal and not ctx.dry_run and stage.name in journal.stages:
                journal.finished(stage.name, ok=False, message=failure.message)
            results.append(StageResult(stage.name, "failed", seconds=time.monotonic() - started,
                                       message=str(failure)))
            if not ctx.dry_run:  # a plan changed nothing: no cluster state to explain
                from cubeinstall.support_bundle import write_for_failure

                failure.support_bundle = write_for_failure(ctx, stage, failure)
            ctx.out.event("stage-failed", stage=stage.name, error=failure.message, hint=failure.hint,
                          support_bundle=failure.support_bundle)
            raise failure from None
        result.seconds = time.monotonic() - started
        results.append(result)
        if result.status == "skipped":
            ctx.out.event("stage-skipped", stage=stage.name,
                          message=f"= {stage.name}: unchanged since its last successful run")
            continue
        report_changes(ctx, stage.name, result.changes)
        ctx.out.event("stage-done", stage=stage.name, changed=result.changed,
                      seconds=round(result.seconds, 2),
                      message=f"✔ {stage.name}: {describe_count(result.changed, ctx.dry_run)}")
    return results


def _run_stage(ctx: RunContext, stage: Stage, journal: "Journal | None") -> StageResult:
    from cubeinstall.state.fingerprint import fingerprint

    objects = stage_objects(stage, ctx.site)
    digest = fingerprint(stage, ctx.site, objects)
    if journal and not ctx.options.force and journal.is_current(stage.name, digest):
        return StageResult(stage.name, "skipped", message="inputs unchanged since last success")
    ctx.out.event("stage-start", stage=stage.name, layer=stage.layer.value,
                  message=f"▶ {stage.name}: {stage.summary}")
    if ctx.dry_run:
        return StageResult(stage.name, "ok", plan_stage(ctx, stage, offline=False))
    if journal:
        journal.started(stage.name, digest)
    changes = apply_stage(ctx, stage, objects)
    if journal:
        journal.finished(stage.name, ok=True, changes=sum(1 for c in changes if c.changes_something))
    return StageResult(stage.name, "ok", changes)


def stage_objects(stage: Stage, site: Site) -> list[dict] | None:
    """A stage's final objects, or None when its desired state is not Kubernetes objects."""
    module = stage_module(stage)
    return rendered(module, stage, site) if hasattr(module, "render") else None


def report_changes(ctx: RunContext, stage: str, changes: list[Change]) -> None:
    for change in changes:
        fields = change.as_event()
        message = None
        if change.changes_something or ctx.out.verbose:
            message = f"  {change.action:9} {change.target}" + (f"  ({change.detail})" if change.detail else "")
        ctx.out.event("change", stage=stage, message=message, **fields)
        if change.diff and (change.changes_something or ctx.out.verbose) and not ctx.out.json_mode:
            ctx.out.text(_indent(change.diff))


def describe_count(changed: int, dry_run: bool) -> str:
    if changed == 0:
        return "no changes"
    noun = "change" if changed == 1 else "changes"
    return f"{changed} {noun} {'planned' if dry_run else 'applied'}"


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.rstrip("\n").splitlines())


