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
    from cubeinstall.upstream.cache import NotFetched

    wanted = set(only)
    for stage in registry.STAGES:
        if not stage.enabled(site) or (wanted and stage.name not in wanted):
            continue
        code = load(stage)
        if not code.renders_objects:
            continue
        try:
            yield stage.name, code.objects(site)
        except NotFetched as missing:
            yield stage.name, missing


def all_objects(site: Site, only: Iterable[str] = ()) -> dict[str, list[dict]]:
    """stage name -> its final objects, for every enabled stage that renders objects."""
    result: dict[str, list[dict]] = {}
    for name, objects in each_stage(site, only):
        if isinstance(objects, CubeError):
            raise objects
        result[name] = objects
    return result
