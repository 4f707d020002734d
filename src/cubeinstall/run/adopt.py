"""`cubeinstall adopt`: take over a site an earlier install (cube-studio's start.sh) made.

Plan first (nothing written): every rendered object that kubectl wrote gets a decision
(kube/takeover.py), every kubectl-written leftover in a platform namespace too; data at
risk (a claim or an in-use volume that would have to be re-created, a second volume on
a host path a volume uses) and a second controller refuse the whole plan. Then, once
confirmed, the decisions are carried out; `cubeinstall all` brings the site to its
desired state afterwards, now applying over objects it owns.
"""

from __future__ import annotations

from collections import Counter

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import ConfigError, CubeError
from cubeinstall.kube import controllers
from cubeinstall.kube.client import client_for
from cubeinstall.kube.errors import KubeError
from cubeinstall.kube.inventory import Found, carry_out, survey
from cubeinstall.kube.takeover import Decision, HostPathClash, Survey
from cubeinstall.site.stages import Stage
from cubeinstall.stages.rendered import all_objects

# How a decision is shown as a change line.
_ACTIONS = {"take-over": "update", "take-over-with-changes": "update", "re-create": "run",
            "remove": "delete", "keep": "skip", "refuse": "skip"}


def plan_adoption(ctx: RunContext, stages: list[Stage] | None = None
                  ) -> tuple[Survey, list[Found]]:
    """Everything adopt would do, read-only; refuses (ConfigError) when data or a second
    controller is at stake, naming the object, the field and the choices. ``stages``: the
    part of the site to take over (--only/--skip; None: all of it)."""
    objects = all_objects(ctx.site)
    names = {stage.name for stage in stages} if stages is not None else set(objects)
    part = None if names >= set(objects) else frozenset(names)
    client = client_for(ctx)
    # controllers of the selected stages only; every stage's namespaces are platform ones
    controllers.check(client, ctx.site, {
        name: objs if name in names else [o for o in objs if o.get("kind") == "Namespace"]
        for name, objs in objects.items()})
    result, found = survey(client, ctx.site, objects, part)
    if part is not None:
        _refuse_replace_in_part(ctx, part, found)
    refusals = result.refusals
    if result.clashes or refusals:
        raise ConfigError(
            "adopt: the earlier install's data would be at risk; nothing was changed",
            problems=[_clash_text(c) for c in result.clashes]
            + [f"{d.target}: {d.reason}" for d in refusals],
            hint="change site.yaml as each line says, then run adopt again")
    return result, found


def _refuse_replace_in_part(ctx: RunContext, part: frozenset[str], found: list[Found]) -> None:
    """mode replace removes the old controller as a leftover, which a part never does:
    two controllers would run after `all`."""
    old = [(controller.stage, item.decision.target) for item in found
           for controller in controllers.CONTROLLERS
           if controller.stage in part and ctx.site.component(controller.stage).mode == "replace"
           and item.live.get("kind") == "Deployment" and controllers.runs(item.live, controller)]
    if old:
        raise ConfigError(
            "adopt: an old controller is removed only by adopt of the whole site; nothing "
            "was changed",
            problems=[f"components.{stage}.mode is replace, and {what} would stay next to "
                      f"stage {stage}'s" for stage, what in old],
            hint="run `cubeinstall adopt` without --only/--skip")


def _clash_text(clash: HostPathClash) -> str:
    claim = clash.claim.rpartition("/")[2]
    return (f"PersistentVolume {clash.ours} (claim {clash.claim}) would use host path "
            f"{clash.path}, which PersistentVolume {clash.existing} already uses: set "
            f"volumes.{claim}.path in site.yaml to another path, or name the existing "
            "volume's path so that one volume keeps the data")


def as_change(decision: Decision) -> Change:
    detail = f"{decision.action}: {decision.reason}"
    return Change(decision.target, _ACTIONS[decision.action], detail, decision.diff)


def summary(result: Survey) -> tuple[list[tuple[str, int]], int]:
    """Rows of (what, how many) and how many decisions change something."""
    counts = Counter(d.action for d in result.decisions)
    rows = [(action, counts[action]) for action in
            ("take-over", "take-over-with-changes", "re-create", "remove", "keep")]
    rows += [("absent (`all` creates it)", result.absent),
             ("already cubeinstall's", result.ours),
             ("not written by kubectl (`all` applies over it)", result.foreign)]
    return rows, sum(1 for d in result.decisions if d.changes_something)


def stages_touched(result: Survey) -> list[str]:
    """Stages whose objects adopt changes: a journal record of them is no longer current
    (ownership moved; the next apply removes kubectl's extra fields)."""
    return sorted({d.stage for d in result.decisions if d.stage and d.changes_something})


def carry_out_all(ctx: RunContext, found: list[Found]) -> list[Change]:
    """Ownership first, then re-creations, then removals (a removed leftover is never
    something a taken-over object still needs)."""
    client = client_for(ctx)
    order = {"take-over": 0, "take-over-with-changes": 0, "re-create": 1, "remove": 2}
    changes = []
    for item in sorted((f for f in found if f.decision.changes_something),
                       key=lambda f: order[f.decision.action]):
        try:
            done = carry_out(client, item)
        except KubeError as error:
            raise CubeError(f"adopt: {item.decision.target}: {error.message}",
                            error.hint or "run `cubeinstall adopt` again: it plans from what "
                                          "the cluster has now") from None
        changes.append(Change(item.decision.target, _ACTIONS[item.decision.action],
                              f"{item.decision.action}: {done}"))
    return changes
