"""Stage `images`: every image the site needs, copied into the private registry.

PLATFORM-FACTS item 4: air-gapped sites pull everything from the private registry,
so the images must be there before any cluster stage creates a pod. The inventory
is the rendered objects of the enabled stages plus the platform's run-time images
(``images.inventory``); the copy is ``images.mirror`` (skopeo, skip by digest).
``plan`` asks one manifest digest per image and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cubeinstall.core.change import Change
from cubeinstall.core.errors import ConfigError, CubeError, StageFailed

if TYPE_CHECKING:
    from cubeinstall.core.context import RunContext
    from cubeinstall.images.inventory import ImageUse
    from cubeinstall.images.mirror import MirrorReport, MirrorSettings
    from cubeinstall.images.status import ImageStatus
    from cubeinstall.site.model import Site

STAGE = "images"
_PLAN_ACTIONS = {"missing": "create", "outdated": "update", "present": "unchanged",
                 "present-unchecked": "unchanged"}


def site_inventory(site: "Site") -> list["ImageUse"]:
    """Every image the site needs: the rendered objects of the enabled stages (with the
    registry rewrite off, so they carry the upstream names) + the platform's run-time images.
    A stage whose upstream files are not fetched fails it (NotFetched says what to do)."""
    uses, unknown = known_inventory(site)
    if unknown:
        raise next(iter(unknown.values()))
    return uses


def known_inventory(site: "Site") -> tuple[list["ImageUse"], dict[str, CubeError]]:
    """The inventory of every stage that renders here, and stage -> why the others cannot
    (their upstream files not in the local cache: `cubeinstall bundle fetch`)."""
    from cubeinstall.images.inventory import (
        RUNTIME_PREFIX,
        build_inventory,
        runtime_images,
        source_site,
    )
    from cubeinstall.render.walk import images_in_objects
    from cubeinstall.stages.rendered import each_stage

    images: dict[str, set[str]] = {}
    unknown: dict[str, CubeError] = {}
    for stage, objects in each_stage(source_site(site)):
        if isinstance(objects, CubeError):
            unknown[stage] = objects
        else:
            images[stage] = images_in_objects(objects)
    for group, runtime in runtime_images().items():
        images[RUNTIME_PREFIX + group] = set(runtime)
    return build_inventory(images, site.registry), unknown


def describe(site: "Site") -> list[Change]:
    """Offline plan: what would be copied if missing (nothing is asked of any registry)."""
    from cubeinstall.upstream.cache import NotFetched

    try:
        uses = _guarded(site_inventory, site)
    except NotFetched as missing:  # the inventory includes the upstream components' images
        return [Change(STAGE, "run", f"inventory needs the upstream files: {missing.message}; "
                                     f"{missing.hint}")]
    return [Change(f"image {use.target}", "run", f"copy from {use.source} unless present")
            for use in uses if use.needs_copy]


def plan(ctx: "RunContext") -> list[Change]:
    from cubeinstall.images.registry_client import RegistryClient
    from cubeinstall.images.status import SourceClients, check, target_endpoint

    if ctx.site.registry is None:
        return [Change(STAGE, "skip", "no registry in site.yaml")]
    uses = _guarded(site_inventory, ctx.site)

    def statuses() -> list["ImageStatus"]:
        target = RegistryClient(target_endpoint(ctx.site.registry))
        target.ping()
        return check(uses, target, SourceClients())

    return [_planned(status) for status in _guarded(statuses)]


def apply(ctx: "RunContext") -> list[Change]:
    return mirror_images(ctx)


def mirror_images(ctx: "RunContext", settings: "MirrorSettings | None" = None) -> list[Change]:
    """Copy what is missing (``cubeinstall images mirror`` passes its own settings)."""
    from cubeinstall.images.mirror import MirrorSettings, failure, mirror

    if ctx.site.registry is None:
        return [Change(STAGE, "skip", "no registry in site.yaml")]
    uses = _guarded(site_inventory, ctx.site)
    report: MirrorReport = _guarded(mirror, ctx.site, uses, ctx.out, settings or MirrorSettings())
    if report.failed:
        raise StageFailed(STAGE, f"{len(report.failed)} of {len(report.results)} images were not "
                                 f"copied: {failure(report)}",
                          hint="fix the cause, then run the stage again: copied images are kept")
    return [_applied(result) for result in report.results]


def _planned(status: "ImageStatus") -> Change:
    use = status.use
    detail = f"from {use.source}"
    if status.state == "outdated":
        detail += f" (target has {status.target_digest}, source {status.source_digest})"
    elif status.state == "present-unchecked":
        detail += f" (source not compared: {status.note})"
    return Change(f"image {use.target}", _PLAN_ACTIONS[status.state], detail)


def _applied(result) -> Change:
    if result.action == "present":
        return Change(f"image {result.target}", "unchanged", f"from {result.source}")
    action = "update" if result.replaced else "create"
    return Change(f"image {result.target}", action, f"copied from {result.source} "
                                                    f"({result.digest})")


def _guarded(function, *args):
    """Engine errors become this stage's failure, with their hint (site mistakes stay
    ConfigError: exit code 2)."""
    from cubeinstall.upstream.cache import NotFetched

    try:
        return function(*args)
    except (StageFailed, ConfigError, NotFetched):  # already say what to do
        raise
    except CubeError as exc:
        raise StageFailed(STAGE, exc.message, exc.hint) from exc
