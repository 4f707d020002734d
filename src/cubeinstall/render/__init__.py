"""Rendering of every cluster stage's objects (pure: no cluster, no network)."""

from __future__ import annotations

from typing import Iterable, Iterator

from cubeinstall.errors import CubeError, NotImplementedStage
from cubeinstall.site.model import Site


def finalize(site: Site, objects: list[dict]) -> list[dict]:
    """Site-wide changes every stage's objects get before planning or applying.

    When the site registry is the mirror, every image points there and every
    pod pulls with hubsecret (the inventory renders with mirror off to see the
    upstream names).
    """
    if site.registry is not None and site.registry.mirror:
        from cubeinstall.images.rewrite import ensure_pull_secret, rewrite_images

        objects = rewrite_images(objects, site)
        if site.registry.username:
            objects = ensure_pull_secret(objects)
    return objects


def all_objects(site: Site, only: Iterable[str] = ()) -> dict[str, list[dict]]:
    """stage name -> its final objects, for every enabled stage that renders objects."""
    result: dict[str, list[dict]] = {}
    for name, objects in each_stage(site, only):
        if isinstance(objects, CubeError):
            raise objects
        result[name] = objects
    return result


def each_stage(site: Site, only: Iterable[str] = ()) -> Iterator[tuple[str, "list[dict] | CubeError"]]:
    """(stage, final objects) for every enabled stage that renders objects, or
    (stage, the error) when it cannot render here (its upstream files not fetched)."""
    from cubeinstall import runner
    from cubeinstall.stages import registry
    from cubeinstall.upstream.cache import NotFetched

    wanted = set(only)
    for stage in registry.STAGES:
        if not stage.enabled(site) or (wanted and stage.name not in wanted):
            continue
        try:
            module = runner.stage_module(stage)
        except NotImplementedStage:
            continue  # reported when the stage runs; rendering shows what exists
        if not hasattr(module, "render"):
            continue
        try:
            yield stage.name, finalize(site, module.render(site))
        except NotFetched as missing:
            yield stage.name, missing
