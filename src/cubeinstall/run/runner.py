"""Walk the stage registry: select, plan, apply, report.

The CLI is a thin layer over this module. A stage either returns its changes
or raises; what needs a failed stage does not run (run/schedule.py runs the
targets whose prerequisites are done, several at once with --jobs; run/targets.py
says where each stage runs: a failure on one cluster stops only what needs it there).
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
    from cubeinstall.run.targets import Target


@dataclass
class StageResult:
    stage: str
    status: str  # "ok", "failed", "skipped"
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""
    label: str = ""  # the target's name in tables (the stage, and its cluster on several)

    def __post_init__(self) -> None:
        self.label = self.label or self.stage

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


def run(ctx: RunContext, targets: "list[Target]", journal: "Journal | None" = None) -> list[StageResult]:
    """Apply (or with --dry-run, plan) the targets; returns their results in their order.

    Up to ``ctx.options.jobs`` targets run at once, each once the targets of its
    prerequisites in this run are done (run/targets.py: on its own cluster); a failed
    target stops what needs it, not its siblings nor the other clusters, and the error
    names both. With one job (--serial, and every plan: a plan counts on what the plans
    before it would create) the targets run one by one in order and the run stops at
    the first failure.

    With a journal, a target that finished ok from the same inputs is skipped
    (unless --force), and every target's start and end are recorded, so an
    interrupted run resumes where it stopped.
    """
    from cubeinstall.run.targets import context_for, prerequisites

    jobs = 1 if ctx.dry_run else max(ctx.options.jobs, 1)
    share_live_objects(ctx, targets)
    units = [Unit(target.key, prerequisites(target, targets), target.stage.holds)
             for target in targets]
    by_key = {target.key: target for target in targets}
    results: dict[str, StageResult] = {}

    def run_one(unit: Unit) -> None:
        target = by_key[unit.name]
        results[unit.name] = _run_and_report(context_for(ctx, target), target, journal,
                                             name_stage=jobs > 1)

    with ctx.out.running_stages(active=jobs > 1 and len(targets) > 1):
        outcome = run_units(units, run_one, limit=jobs, keep_going=jobs > 1)
    for key, error in outcome.failed.items():
        results[key] = StageResult(by_key[key].stage.name, "failed", label=by_key[key].label,
                                   message=str(getattr(error, "message", error)))
    if outcome.failed:
        labels = {key: target.label for key, target in by_key.items()}
        raise _run_failed(ctx, outcome, name_not_run=jobs > 1, labels=labels)
    return [results[target.key] for target in targets]


def share_live_objects(ctx: RunContext, targets: "list[Target]") -> None:
    """The engines of these targets share, per cluster, one snapshot of what their stages
    have live there (kube/snapshot.py): call it with all of a command's targets before
    running them one by one."""
    for target in targets:
        if target.cluster is not None:
            ctx.run_stages[target.cluster] = (ctx.run_stages.get(target.cluster, frozenset())
                                              | {target.stage.name})


def _run_and_report(ctx: RunContext, target: "Target", journal: "Journal | None",
                    name_stage: bool) -> StageResult:
    stage, started = target.stage, time.monotonic()
    attempt = Attempt(stage, target)
    try:
        result = _run_stage(ctx, attempt, journal)
    except CubeError as exc:
        raise _failure(ctx, attempt, exc, journal) from None
    result.seconds, result.label = time.monotonic() - started, target.label
    if result.status == "skipped":
        ctx.out.event("stage-skipped", stage=stage.name, **target.fields,
                      message=f"= {target.label}: unchanged since its last successful run")
        return result
    report_changes(ctx, stage.name, result.changes, name_stage=name_stage, label=target.label,
                   fields=target.fields)
    ctx.out.event("stage-done", stage=stage.name, **target.fields, changed=result.changed,
                  seconds=round(result.seconds, 2),
                  message=f"✔ {target.label}: {describe_count(result.changed, ctx.dry_run)}")
    return result


def _run_failed(ctx: RunContext, outcome: Outcome, name_not_run: bool,
                labels: dict[str, str] | None = None) -> BaseException:
    """The error of a run with failed targets: the failure itself when it is the only one
    (a site mistake stays a ConfigError), else one naming every failed target; and (when
    siblings went on) the targets not run because they need a failed one. Events name
    targets by key (the stage, or stage@cluster), messages by label (default: the key)."""
    labels = labels or {}
    not_run: dict[str, list[str]] = {}
    for name, cause in outcome.blocked.items() if name_not_run else ():
        not_run.setdefault(cause, []).append(name)
    for cause, names in not_run.items():
        ctx.out.event("stages-not-run", stage=cause, stages=names,
                      message=f"not run, since {labels.get(cause, cause)} failed: "
                              f"{', '.join(labels.get(name, name) for name in names)}")
    errors = list(outcome.failed.values())
    config = next((e for e in errors if isinstance(e, ConfigError)), None)
    if config is not None or len(errors) == 1:
        error = config or errors[0]
        if not isinstance(error, CubeError) or not not_run:
            return error
        return _with_not_run(error, not_run, labels)
    if not all(isinstance(error, CubeError) for error in errors):
        return next(e for e in errors if not isinstance(e, CubeError))  # a bug: its traceback
    summary = "; ".join(str(error.message) for error in errors)
    combined = CubeError(f"{len(errors)} stages failed: {summary}",
                         hint="each failure's support bundle is named above; fix the causes "
                              "and run again (the stages that finished are not repeated)")
    return _with_not_run(combined, not_run, labels)


def _with_not_run(error: CubeError, not_run: dict[str, list[str]],
                  labels: dict[str, str]) -> CubeError:
    """A copy of ``error`` that also names the targets not run because of it (the stage's
    own error, as its event reported it, stays as it was)."""
    names = sorted(labels.get(name, name) for names in not_run.values() for name in names)
    if not names:
        return error
    return error.with_message(f"{error.message} (not run, as they need it: {', '.join(names)})")


@dataclass
class Attempt:
    """One target in this run: its objects once rendered (the failure's support bundle
    shows the cluster's view of the same objects)."""

    stage: Stage
    target: "Target"
    objects: list[dict] | None = None
    rendered: bool = False


def _failure(ctx: RunContext, attempt: Attempt, exc: CubeError,
             journal: "Journal | None") -> CubeError:
    """The error of a failed target: site mistakes stay ConfigError (exit 2);
    anything else becomes StageFailed, recorded, with its support bundle."""
    target = attempt.target
    if journal and not ctx.dry_run and target.key in journal.stages:
        journal.finished(target.key, ok=False, message=exc.message)
    if isinstance(exc, ConfigError):
        return exc
    failure = (exc if isinstance(exc, StageFailed)
               else StageFailed(target.label, str(exc.message), exc.hint))
    if not ctx.dry_run:  # a plan changed nothing: no cluster state to explain
        from cubeinstall.run.support_bundle import write_for_failure

        failure.support_bundle = write_for_failure(ctx, attempt.stage, failure, attempt.objects,
                                                   attempt.rendered)
    ctx.out.event("stage-failed", stage=attempt.stage.name, **target.fields,
                  error=failure.message, hint=failure.hint, support_bundle=failure.support_bundle)
    return failure


def _run_stage(ctx: RunContext, attempt: Attempt, journal: "Journal | None") -> StageResult:
    from cubeinstall.run.fingerprint import fingerprint

    stage, target, code = attempt.stage, attempt.target, load(attempt.stage)
    attempt.objects, attempt.rendered = code.objects(ctx.site), True
    digest = fingerprint(stage, ctx.site, attempt.objects)
    if journal and not ctx.options.force and journal.is_current(target.key, digest):
        return StageResult(stage.name, "skipped", message="inputs unchanged since last success")
    ctx.out.event("stage-start", stage=stage.name, **target.fields, layer=stage.layer.value,
                  message=f"▶ {target.label}: {stage.summary}")
    if ctx.dry_run:
        return StageResult(stage.name, "ok", plan_stage(ctx, stage, False, attempt.objects))
    if journal:
        journal.started(target.key, digest, cluster=target.cluster)
    changes = code.apply(ctx, attempt.objects)
    if journal:
        journal.finished(target.key, ok=True, changes=count_changing(changes))
    return StageResult(stage.name, "ok", changes)


def report_changes(ctx: RunContext, stage: str, changes: list[Change], *,
                   name_stage: bool = False, label: str | None = None,
                   fields: dict | None = None, shown: tuple[str, ...] = ()) -> None:
    """One line per change; ``name_stage``: each line starts with the stage, or ``label``
    (a plan, or stages at once: no stage heading above them); ``fields``: more for each
    event (the cluster); ``shown``: actions given a line although they change nothing
    (uninstall's "skip": what it keeps, and why)."""
    for change in changes:
        event = change.as_event()
        message = None
        if change.changes_something or change.action in shown or ctx.out.verbose:
            message = (f"  {(label or stage) + ':  ' if name_stage else ''}{change.action:9} {change.target}"
                       + (f"  ({change.detail})" if change.detail else ""))
        ctx.out.event("change", stage=stage, message=message, **(fields or {}), **event)
        if change.diff and (change.changes_something or ctx.out.verbose) and not ctx.out.json_mode:
            ctx.out.text(_indent(change.diff))


def describe_count(changed: int, dry_run: bool) -> str:
    if changed == 0:
        return "no changes"
    noun = "change" if changed == 1 else "changes"
    return f"{changed} {noun} {'planned' if dry_run else 'applied'}"


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.rstrip("\n").splitlines())


