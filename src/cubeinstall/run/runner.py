"""Walk the stage registry: select, plan, apply, report.

The CLI is a thin layer over this module. A stage either returns its changes
or raises; the run stops at the first failed stage, because every later stage
may need what it provides.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cubeinstall.core.change import Change, count_changing
from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import ConfigError, CubeError, StageFailed
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.site.stages import Stage
from cubeinstall.stages import load

if TYPE_CHECKING:
    from cubeinstall.run.journal import Journal


@dataclass
class StageResult:
    stage: str
    status: str  # "ok", "failed", "skipped"
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""

    @property
    def changed(self) -> int:
        return count_changing(self.changes)


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


def plan_stage(ctx: RunContext, stage: Stage, offline: bool,
               objects: list[dict] | None = None) -> list[Change]:
    """What the stage would change: against the live targets, or (offline) from the site alone.
    Later stages of the same plan count on what this one would create (``ctx.planned``)."""
    code = load(stage)
    if offline:
        return code.describe(ctx.site)
    objects = objects if objects is not None else code.objects(ctx.site)
    changes = code.plan(ctx, objects)
    remember_planned(ctx, objects or [])
    return changes


def remember_planned(ctx: RunContext, objects: list[dict]) -> None:
    from cubeinstall.kube.resolution import crd_group_kinds

    ctx.planned.namespaces.update(obj["metadata"]["name"] for obj in objects
                                  if obj.get("kind") == "Namespace")
    ctx.planned.kinds.update(crd_group_kinds(objects))


def stage_objects(stage: Stage, site: Site) -> list[dict] | None:
    """A stage's final objects, or None when its desired state is not Kubernetes objects."""
    return load(stage).objects(site)


def run(ctx: RunContext, stages: list[Stage], journal: "Journal | None" = None) -> list[StageResult]:
    """Apply (or with --dry-run, plan) each stage in order; stop at the first failure.

    With a journal, a stage that finished ok from the same inputs is skipped
    (unless --force), and every stage's start and end are recorded, so an
    interrupted run resumes where it stopped.
    """
    results: list[StageResult] = []
    for stage in stages:
        started = time.monotonic()
        attempt = Attempt(stage)
        try:
            result = _run_stage(ctx, attempt, journal)
        except CubeError as exc:
            failure = _failure(ctx, attempt, exc, journal)
            results.append(StageResult(stage.name, "failed", seconds=time.monotonic() - started,
                                       message=str(failure)))
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


@dataclass
class Attempt:
    """One stage in this run: its objects once rendered (the failure's support bundle
    shows the cluster's view of the same objects)."""

    stage: Stage
    objects: list[dict] | None = None
    rendered: bool = False


def _failure(ctx: RunContext, attempt: Attempt, exc: CubeError,
             journal: "Journal | None") -> CubeError:
    """The error to raise for a failed stage: site mistakes stay ConfigError (exit 2);
    anything else becomes StageFailed, recorded, with its support bundle."""
    name = attempt.stage.name
    if journal and not ctx.dry_run and name in journal.stages:
        journal.finished(name, ok=False, message=exc.message)
    if isinstance(exc, ConfigError):
        return exc
    failure = exc if isinstance(exc, StageFailed) else StageFailed(name, str(exc.message), exc.hint)
    if not ctx.dry_run:  # a plan changed nothing: no cluster state to explain
        from cubeinstall.run.support_bundle import write_for_failure

        failure.support_bundle = write_for_failure(ctx, attempt.stage, failure, attempt.objects,
                                                   attempt.rendered)
    ctx.out.event("stage-failed", stage=name, error=failure.message, hint=failure.hint,
                  support_bundle=failure.support_bundle)
    return failure


def _run_stage(ctx: RunContext, attempt: Attempt, journal: "Journal | None") -> StageResult:
    from cubeinstall.run.fingerprint import fingerprint

    stage, code = attempt.stage, load(attempt.stage)
    attempt.objects, attempt.rendered = code.objects(ctx.site), True
    digest = fingerprint(stage, ctx.site, attempt.objects)
    if journal and not ctx.options.force and journal.is_current(stage.name, digest):
        return StageResult(stage.name, "skipped", message="inputs unchanged since last success")
    ctx.out.event("stage-start", stage=stage.name, layer=stage.layer.value,
                  message=f"▶ {stage.name}: {stage.summary}")
    if ctx.dry_run:
        return StageResult(stage.name, "ok", plan_stage(ctx, stage, False, attempt.objects))
    if journal:
        journal.started(stage.name, digest)
    changes = code.apply(ctx, attempt.objects)
    if journal:
        journal.finished(stage.name, ok=True, changes=count_changing(changes))
    return StageResult(stage.name, "ok", changes)


def report_changes(ctx: RunContext, stage: str, changes: list[Change], *,
                   name_stage: bool = False) -> None:
    """One line per change; ``name_stage``: each line starts with the stage (a plan, whose
    lines have no stage heading above them)."""
    for change in changes:
        fields = change.as_event()
        message = None
        if change.changes_something or ctx.out.verbose:
            message = (f"  {stage + ':  ' if name_stage else ''}{change.action:9} {change.target}"
                       + (f"  ({change.detail})" if change.detail else ""))
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


