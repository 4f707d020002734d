"""volcano: the Volcano batch scheduler (upstream volcano-development.yaml, pinned).

Namespace: ``volcano-system`` by default, upstream's own. cube-studio's copy moves
everything to ``kubeflow``; that works only by editing flags, env and webhook selectors
by hand, and puts the platform's namespace on the webhooks' exclusion list (Volcano
objects created in ``kubeflow`` would then skip validation). The platform only creates
Volcano Jobs (in ``pipeline`` and friends) and never looks for Volcano's namespace, so
the upstream layout is kept; ``components.volcano.namespace: kubeflow`` reproduces
cube-studio's, with every mention re-targeted by typed patches. ``mode: existing``: the
cluster already runs Volcano (start.sh's, in ``kubeflow``); nothing is installed and
plan/apply verify that the CRDs of what the platform creates are Established.

The admission webhooks have failurePolicy Fail and certificates made at run time by the
``volcano-admission-init`` Job: the engine waits for the Job, the admission Deployment,
then for the webhooks to answer (``gates.webhooks``) before anything later uses them.
"""

from __future__ import annotations

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.stages.existing import existing, verify_crds
from cubeinstall.upstream import manifests, patches
from cubeinstall.upstream.namespaces import own_namespace

STAGE = "volcano"
UPSTREAM = ("volcano",)
UPSTREAM_NAMESPACE = "volcano-system"
# What the platform creates: Volcano Jobs, scheduled in PodGroups of Queues.
REQUIRED_CRDS = ("jobs.batch.volcano.sh", "podgroups.scheduling.volcano.sh",
                 "queues.scheduling.volcano.sh")


def namespace(site: Site) -> str:
    return site.component(STAGE).namespace or UPSTREAM_NAMESPACE


def render(site: Site) -> list[dict]:
    if existing(site, STAGE):
        return []
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


def check(ctx: RunContext) -> list[Change]:
    """mode existing: the Volcano the site already runs must serve what the platform creates."""
    if not existing(ctx.site, STAGE):
        return []
    return verify_crds(ctx, STAGE, "Volcano", REQUIRED_CRDS)
