"""prometheus: prometheus-operator (pinned upstream) plus the platform's monitoring objects.

The operator's CRDs and its RBAC/Deployment/Service come from upstream's example/
files, which hard-code namespace ``default`` (ClusterRoleBinding subject included):
they are moved to ``monitoring``. The platform's own objects (Prometheus,
Alertmanager, Grafana, exporters, ServiceMonitors) come from
``cubeinstall.stages.prometheus_objects``, which takes what the platform queries
from cube-studio's own install tree (``prometheus_upstream``).
"""

from __future__ import annotations

from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.stages import prometheus_objects
from cubeinstall.upstream import catalog, manifests, patches

STAGE = "prometheus"
UPSTREAM = ("prometheus-operator", "cube-studio")  # cube-studio: prometheus_upstream
NAMESPACE = "monitoring"  # a platform namespace: its objects and the platform's links expect it


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    operator = patches.set_namespace(manifests.objects(site, "prometheus-operator"), NAMESPACE)
    operator = patches.pin_images(operator, catalog.resolve(site, "prometheus-operator").pins)
    operator = patches.for_site(operator, site, registry.get(STAGE).placement_label(site))
    return operator + own_objects(site)


def own_objects(site: Site) -> list[dict]:
    return prometheus_objects.render(site)
