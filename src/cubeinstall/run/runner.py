"""Walk the stage registry: select, plan, apply, report.

The CLI is a thin layer over this module. A stage either returns its changes
or raises; what needs a failed stage does not run (run/schedule.py runs the
stages whose prerequisites are done, several at once with --jobs).
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cubeinstall.core.change import Change, count_changing
from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import ConfigError, CubeError, StageFailed
from cubeinstall.run.schedule import Outcome, Unit, run_units
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
    """Apply (or with --dry-run, plan) the stages; returns their results in registry order.

    Up to ``ctx.options.jobs`` stages run at once, each once those of its prerequisites
    in this run (site.stages.prerequisites) are done; a failed stage stops what needs
    it, not its siblings, and the error names both. With one job (--serial, and every
    plan: a plan counts on what the plans before it would create) the stages run one by
    one in registry order and the run stops at the first failure.

    With a journal, a stage that finished ok from the same inputs is skipped
    (unless --force), and every stage's start and end are recorded, so an
    interrupted run resumes where it stopped.
    """
    jobs = 1 if ctx.dry_run else max(ctx.options.jobs, 1)
    names = {stage.name for stage in stages}
    units = [Unit(stage.name, registry.prerequisites(stage) & names, stage.holds)
             for stage in stages]
    by_name = {stage.name: stage for stage in stages}
    results: dict[str, StageResult] = {}

    def run_one(unit: Unit) -> None:
        results[unit.name] = _run_and_report(ctx, by_name[unit.name], journal,
                                             name_stage=jobs > 1)

    with ctx.out.running_stages(active=jobs > 1 and len(stages) > 1):
        outcome = run_units(units, run_one, limit=jobs, keep_going=jobs > 1)
    for name, error in outcome.failed.items():
        results[name] = StageResult(name, "failed", message=str(getattr(error, "message", error)))
    if outcome.failed:
        raise _run_failed(ctx, outcome, name_not_run=jobs > 1)
    return [results[stage.name] for stage in stages]


def _run_and_report(ctx: RunContext, stage: Stage, journal: "Journal | None",
                    name_stage: bool) -> StageResult:
    started = time.monotonic()
    attempt = Attempt(stage)
    try:
        result = _run_stage(ctx, attempt, journal)
    except CubeError as exc:
        raise _failure(ctx, attempt, exc, journal) from None
    result.seconds = time.monotonic() - started
    if result.status == "skipped":
        ctx.out.event("stage-skipped", stage=stage.name,
                      message=f"= {stage.name}: unchanged since its last successful run")
        return result
    report_changes(ctx, stage.name, result.changes, name_stage=name_stage)
    ctx.out.event("stage-done", stage=stage.name, changed=result.changed,
                  seconds=round(result.seconds, 2),
                  message=f"✔ {stage.name}: {describe_count(result.changed, ctx.dry_run)}")
    return result


def _run_failed(ctx: RunContext, outcome: Outcome, name_not_run: bool) -> BaseException:
    """The error of a run with failed stages: the failure itself when it is the only one
    (a site mistake stays a ConfigError), else one naming every failed stage; and (when
    siblings went on) the stages not run because they need a failed one."""
    not_run: dict[str, list[str]] = {}
    for name, cause in outcome.blocked.items() if name_not_run else ():
        not_run.setdefault(cause, []).append(name)
    for cause, names in not_run.items():
        ctx.out.event("stages-not-run", stage=cause, stages=names,
                      message=f"not run, since {cause} failed: {', '.join(names)}")
    errors = list(outcome.failed.values())
    config = next((e for e in errors if isinstance(e, ConfigError)), None)
    if config is not None or len(errors) == 1:
        error = config or errors[0]
        if not isinstance(error, CubeError) or not not_run:
            return error
        return _with_not_run(error, not_run)
    if not all(isinstance(error, CubeError) for error in errors):
        return next(e for e in errors if not isinstance(e, CubeError))  # a bug: its traceback
    summary = "; ".join(str(error.message) for error in errors)
    combined = CubeError(f"{len(errors)} stages failed: {summary}",
                         hint="each failure's support bundle is named above; fix the causes "
                              "and run again (the stages that finished are not repeated)")
    return _with_not_run(combined, not_run)


def _with_not_run(error: CubeError, not_run: dict[str, list[str]]) -> CubeError:
    names = sorted(name for names in not_run.values() for name in names)
    if not names:
        return error
    error.message = f"{error.message} (not run, as they need it: {', '.join(names)})"
    return error


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


