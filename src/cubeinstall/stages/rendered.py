"""Every enabled stage's final objects at once (render, plan --offline, the image inventory)."""

from __future__ import annotations

from typing import Iterable, Iterator

from cubeinstall.core.errors import CubeError
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.stages.contract import load


def each_stage(site: Site, only: Iterable[str] = ()) -> Iterator[tuple[str, "list[dict] | CubeError"]]:
    """(stage, final objects) for every enabled stage that renders objects, or
    (stage, the error) when it cannot render here (its upstream files not fetched)."""
    wanted = set(only)
    for stage in registry.STAGES:
        if not stage.enabled(site) or (wanted and stage.name not in wanted):
            continue
        if renders_objects(stage):
            yield stage.name, objects_or_missing(stage, site)


def renders_objects(stage: registry.Stage) -> bool:
    return load(stage).renders_objects


def objects_or_missing(stage: registry.Stage, site: Site) -> "list[dict] | CubeError":
    """The stage's final objects for the site (or one cluster's view of it), or the error
    saying its upstream files are not fetched."""
    from cubeinstall.upstream.cache import NotFetched

    try:
        return load(stage).objects(site)
    except NotFetched as missing:
        return missing


def all_objects(site: Site, only: Iterable[str] = ()) -> dict[str, list[dict]]:
    """stage name -> its final objects, for every enabled stage that renders objects."""
    result: dict[str, list[dict]] = {}
    for name, objects in each_stage(site, only):
        if isinstance(objects, CubeError):
            raise objects
        result[name] = objects
    return result
