"""The stage contract: what a stage module may declare, checked once when it is loaded.

A stage module (``cubeinstall.stages.<module>``, named by the registry in
``cubeinstall.site.stages``) declares module-level functions, each optional:

    render(site) -> list[dict]          the stage's Kubernetes objects (pure)
    describe(site) -> list[Change]      the offline plan (default: one "create" per object)
    check(ctx) -> list[Change]          read-only preconditions, before plan and apply
    plan(ctx) -> list[Change]           a code stage's plan (object stages: the engine's)
    apply(ctx) -> list[Change]          a code stage's apply (object stages: the engine's)
    verify(ctx) -> list[Change]         after apply: proof that it works (e.g. a login)
    remove(ctx, purge, restore_node_files) -> list[Change]   uninstall (default: by layer)

A stage either renders objects (the engine plans and applies them) or is code
(it declares plan and apply); never both. ``load`` fills the defaults once and
returns a frozen ``StageCode``; a module of the wrong shape (both, neither, a
name close to a contract name, a wrong parameter list) fails at load, naming
the module.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Callable

from cubeinstall.core.change import Change
from cubeinstall.core.errors import CubeError
from cubeinstall.site.stages import Layer, Stage

if TYPE_CHECKING:
    from cubeinstall.core.context import RunContext
    from cubeinstall.site.model import Site

# contract name -> its parameters, in order
CONTRACT: dict[str, tuple[str, ...]] = {
    "render": ("site",),
    "describe": ("site",),
    "check": ("ctx",),
    "plan": ("ctx",),
    "apply": ("ctx",),
    "verify": ("ctx",),
    "remove": ("ctx", "purge", "restore_node_files"),
}


class StageShapeError(CubeError):
    """A stage module does not follow the contract: a defect of cubeinstall, not of the site."""

    def __init__(self, module: str, problem: str):
        super().__init__(f"stage module {module}: {problem}",
                         hint="a stage module declares render, or plan and apply "
                              "(see cubeinstall/stages/contract.py)")


@dataclass(frozen=True)
class StageCode:
    """One stage's code, every contract function present (defaults filled)."""

    stage: Stage
    module: str
    render_objects: Callable[["Site"], list[dict]] | None
    describe: Callable[["Site"], list[Change]]
    check: Callable[["RunContext"], list[Change]]
    plan_code: Callable[["RunContext"], list[Change]] | None
    apply_code: Callable[["RunContext"], list[Change]] | None
    verify: Callable[["RunContext"], list[Change]]
    remove: Callable[["RunContext", bool, bool], list[Change]]

    @property
    def renders_objects(self) -> bool:
        return self.render_objects is not None

    def objects(self, site: "Site") -> list[dict] | None:
        """The stage's final objects (images pointed at the site registry), or None for code."""
        if self.render_objects is None:
            return None
        from cubeinstall.render import finalize

        return finalize(site, self.render_objects(site))

    def plan(self, ctx: "RunContext", objects: list[dict] | None = None) -> list[Change]:
        """What apply would change; reads only. ``objects``: already rendered, else rendered here."""
        changes = self.check(ctx)
        if self.plan_code is not None:
            return changes + self.plan_code(ctx)
        from cubeinstall.stages import cluster

        return changes + cluster.plan(ctx, self.stage.name, self._objects(ctx, objects))

    def apply(self, ctx: "RunContext", objects: list[dict] | None = None) -> list[Change]:
        """Bring the target to the desired state (with --dry-run: plan), then verify it."""
        if ctx.dry_run:
            return self.plan(ctx, objects)
        changes = self.check(ctx)
        if self.apply_code is not None:
            changes += self.apply_code(ctx)
        else:
            from cubeinstall.stages import cluster

            changes += cluster.apply(ctx, self.stage.name, self._objects(ctx, objects))
        return changes + self.verify(ctx)

    def _objects(self, ctx: "RunContext", objects: list[dict] | None) -> list[dict]:
        return objects if objects is not None else self.objects(ctx.site) or []


def load(stage: Stage) -> StageCode:
    """The stage's code, checked against the contract (cached: a module loads once)."""
    return _load(stage)


@lru_cache(maxsize=None)
def _load(stage: Stage) -> StageCode:
    name = f"cubeinstall.stages.{stage.module}"
    module = importlib.import_module(name)
    declared = _declared(module, name)
    render, plan, apply = declared.get("render"), declared.get("plan"), declared.get("apply")
    if render is not None and (plan or apply):
        raise StageShapeError(name, "declares render and plan/apply: an object stage is planned "
                                    "and applied by the engine (use check/verify for more)")
    if render is None and not (plan and apply):
        raise StageShapeError(name, "declares neither render nor both plan and apply")
    return StageCode(
        stage=stage, module=name, render_objects=render,
        describe=declared.get("describe") or _default_describe(stage, render),
        check=declared.get("check") or _nothing,
        plan_code=plan, apply_code=apply,
        verify=declared.get("verify") or _nothing,
        remove=declared.get("remove") or _default_remove(stage),
    )


def _declared(module: ModuleType, name: str) -> dict[str, Callable]:
    """The contract functions the module defines, each with the contract's parameters."""
    found = {}
    for attribute, value in vars(module).items():
        if attribute.startswith("_") or not inspect.isfunction(value):
            continue
        if attribute in CONTRACT:
            parameters = tuple(inspect.signature(value).parameters)
            if parameters != CONTRACT[attribute]:
                raise StageShapeError(name, f"{attribute}{_signature(parameters)} should be "
                                            f"{attribute}{_signature(CONTRACT[attribute])}")
            found[attribute] = value
            continue
        if value.__module__ != module.__name__:
            continue  # an imported helper is not a declaration
        close = difflib.get_close_matches(attribute, CONTRACT, n=1, cutoff=0.8)
        if close and close[0] not in vars(module):
            raise StageShapeError(name, f"function {attribute!r} is not part of the stage "
                                        f"contract: did you mean {close[0]!r}?")
    return found


def _signature(parameters: tuple[str, ...]) -> str:
    return f"({', '.join(parameters)})"


def _nothing(ctx: "RunContext") -> list[Change]:
    return []


def _default_describe(stage: Stage, render: Callable | None) -> Callable[["Site"], list[Change]]:
    def describe(site: "Site") -> list[Change]:
        if render is None:
            return [Change(stage.name, "run", stage.summary)]
        from cubeinstall.render import finalize
        from cubeinstall.stages import cluster
        from cubeinstall.upstream.cache import NotFetched

        try:
            return cluster.offline(finalize(site, render(site)))
        except NotFetched as missing:
            return [Change(stage.name, "run", f"{missing.message}; {missing.hint}")]

    return describe


REMOVAL_KEPT = {
    Layer.NODE: "node changes kept (uninstall --restore-node-files gives edited files back; "
                "/data/k8s is never wiped)",
    Layer.REGISTRY: "mirrored images stay in the registry",
    Layer.DATABASE: "data kept (uninstall --purge removes it)",
}


def _default_remove(stage: Stage) -> Callable[["RunContext", bool, bool], list[Change]]:
    def remove(ctx: "RunContext", purge: bool, restore_node_files: bool) -> list[Change]:
        if stage.layer is Layer.CLUSTER:
            from cubeinstall.stages import cluster

            return cluster.uninstall(ctx, stage.name, purge=purge)
        return [Change(stage.name, "skip", REMOVAL_KEPT[stage.layer])]

    return remove
