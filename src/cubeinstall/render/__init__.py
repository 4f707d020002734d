"""Rendering of every cluster stage's objects (pure: no cluster, no network)."""

from __future__ import annotations

from cubeinstall.errors import NotImplementedStage
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


def all_objects(site: Site) -> dict[str, list[dict]]:
    """stage name -> its final objects, for every enabled stage that renders objects."""
    from cubeinstall import runner
    from cubeinstall.stages import registry

    result: dict[str, list[dict]] = {}
    for stage in registry.STAGES:
        if not stage.enabled(site):
            continue
        try:
            module = runner.stage_module(stage)
        except NotImplementedStage:
            continue  # reported when the stage runs; rendering shows what exists
        if hasattr(module, "render"):
            result[stage.name] = finalize(site, module.render(site))
    return result
