"""volcano: the Volcano batch scheduler (upstream volcano-development.yaml, pinned).

Namespace: ``volcano-system`` by default, upstream's own. cube-studio's copy moves
everything to ``kubeflow``; that works only by editing flags, env and webhook selectors
by hand, and puts the platform's namespace on the webhooks' exclusion list (Volcano
objects created in ``kubeflow`` would then skip validation). The platform only creates
Volcano Jobs (in ``pipeline`` and friends) and never looks for Volcano's namespace, so
the upstream layout is kept; ``components.volcano.namespace: kubeflow`` reproduces
cube-studio's, with every mention re-targeted by typed patches.

The admission webhooks have failurePolicy Fail and certificates made at run time by the
``volcano-admission-init`` Job: the engine waits for the Job, the admission Deployment,
then for the webhooks to answer (``gates.webhooks``) before anything later uses them.
"""

from __future__ import annotations

from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.upstream import manifests, patches
from cubeinstall.upstream.namespaces import own_namespace

STAGE = "volcano"
UPSTREAM = ("volcano",)
UPSTREAM_NAMESPACE = "volcano-system"


def namespace(site: Site) -> str:
    return site.component(STAGE).namespace or UPSTREAM_NAMESPACE


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    target = namespace(site)
    # The file creates volcano-system and volcano-monitoring (used only by the separate
    # monitoring manifest, not installed): namespaces are declared below, by us.
    objects = [obj for obj in manifests.objects(site, "volcano") if obj["kind"] != "Namespace"]
    if target != UPSTREAM_NAMESPACE:
        objects = patches.retarget_namespace_mentions(
            patches.set_namespace(objects, target), UPSTREAM_NAMESPACE, target)
    objects = patches.for_site(objects, site, registry.get(STAGE).placement_label(site))
    return own_namespace(site, target) + objects
