"""frameworkcontroller: Microsoft's FrameworkController (StatefulSet written in templates/).

Namespace: ``katib`` by default, the only placement the platform's documents give
(PLATFORM-FACTS item 13); the controller watches every namespace, so its own is only
where its pod lives (``components.frameworkcontroller.namespace`` moves it, e.g. to
``automl``, the 2026 release's name for katib). Its config file is upstream's example
config at the pinned version, from the cache.
"""

from __future__ import annotations

import hashlib

from cubeinstall.render.engine import render_stage
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.upstream import catalog, manifests, patches
from cubeinstall.upstream.namespaces import own_namespace

STAGE = "frameworkcontroller"
UPSTREAM = ("frameworkcontroller",)
DEFAULT_NAMESPACE = "katib"
IMAGE = "docker.io/frameworkcontroller/frameworkcontroller"
CONFIG = "example/config/default/frameworkcontroller.yaml"


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    config = manifests.text(site, "frameworkcontroller", CONFIG)
    namespace = site.component(STAGE).namespace or DEFAULT_NAMESPACE
    objects = render_stage(
        STAGE,
        namespace=namespace,
        image=catalog.resolve(site, "frameworkcontroller").image(IMAGE),
        config=config,
        config_sha256=hashlib.sha256(config.encode()).hexdigest(),
    )
    placement = registry.get(STAGE).placement_label(site)
    return own_namespace(site, namespace) + patches.for_site(objects, site, placement)
