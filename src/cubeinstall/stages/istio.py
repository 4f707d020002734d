"""istio: the pinned Istio CRDs, istiod and the ingress gateway -- or a check of an existing Istio.

``components.istio.mode: install`` (default): the CRDs of the catalog's version
(crd-all.gen.yaml) plus istiod and the ingress gateway written in templates/istio,
with the same version's images. ``mode: existing``: the cluster already runs Istio;
nothing is installed and plan/apply only verify that the CRDs the platform creates
objects of are there and Established.
"""

from __future__ import annotations

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.render.engine import render_stage
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.stages.existing import existing as is_existing
from cubeinstall.stages.existing import verify_crds
from cubeinstall.upstream import catalog, manifests, patches

STAGE = "istio"
UPSTREAM = ("istio",)
NAMESPACE = "istio-system"  # platform namespace (stage namespaces creates it)
PILOT = "docker.io/istio/pilot"
PROXY = "docker.io/istio/proxyv2"
# The CRDs of the objects the platform creates (gateway stage: Gateway, VirtualService).
REQUIRED_CRDS = ("gateways.networking.istio.io", "virtualservices.networking.istio.io")


def existing(site: Site) -> bool:
    return is_existing(site, STAGE)


def render(site: Site) -> list[dict]:
    if existing(site):
        return []
    manifests.require(site, UPSTREAM)
    pinned = catalog.resolve(site, "istio")
    own = render_stage(STAGE, namespace=NAMESPACE, pilot_image=pinned.image(PILOT),
                       proxy_image=pinned.image(PROXY))
    placement = registry.get(STAGE).placement_label(site)
    return manifests.objects(site, "istio") + patches.for_site(own, site, placement)


def check(ctx: RunContext) -> list[Change]:
    """mode existing: the Istio the site already runs must serve what the platform creates."""
    return verify_existing(ctx) if existing(ctx.site) else []


def verify_existing(ctx: RunContext) -> list[Change]:
    """mode existing: the CRDs must be there and Established; nothing is written."""
    return verify_crds(ctx, STAGE, "Istio", REQUIRED_CRDS)
