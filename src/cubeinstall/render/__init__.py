"""Rendering (pure: no cluster, no network): jinja templates to objects, then the
site-wide changes every stage's objects get (``finalize``)."""

from __future__ import annotations

from cubeinstall.site.model import Site
from cubeinstall.site.platform import registry_login


def finalize(site: Site, objects: list[dict]) -> list[dict]:
    """Site-wide changes every stage's objects get before planning or applying.

    When the site registry is the mirror, every image points there. When it needs
    a login, every pod pulls with hubsecret (the one rule: the namespaces stage
    creates hubsecret under the same condition, ``registry_login``).
    """
    from cubeinstall.render.pull_secret import ensure_pull_secret
    from cubeinstall.render.rewrite import rewrite_images

    if site.registry is not None and site.registry.mirror:
        objects = rewrite_images(objects, site)
    if registry_login(site) is not None:
        objects = ensure_pull_secret(objects)
    return objects
