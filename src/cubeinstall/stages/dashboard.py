"""dashboard: the two Kubernetes dashboards of PLATFORM-FACTS item 6, in kube-system.

- ``kubernetes-dashboard-cluster``: its ServiceAccount is bound to cluster-admin;
  served at ``/k8s/dashboard/cluster/``.
- ``kubernetes-dashboard-user1``: its ServiceAccount holds a read-only Role in
  the pipeline and katib/automl namespaces only; served at ``/k8s/dashboard/pipeline/``.

Both serve plain HTTP on 9090 (the gateway routes there; TLS belongs at the
gateway) with ``--enable-insecure-login`` so a token login works over HTTP.
"Skip login" lets anyone who reaches the URL act as the dashboard's own
ServiceAccount: by default only the restricted dashboard offers it
(``dashboard.skip_login`` in site.yaml). The restricted Role has no pods/exec:
pipeline pods run as kubeflow-pipeline, bound cluster-wide to everything, so a
shell in one of them would be cluster-admin.
"""

from __future__ import annotations

from cubeinstall.render.engine import render_stage
from cubeinstall.site.model import Site
from cubeinstall.stages.workloads import pod_values

STAGE = "dashboard"
NAMESPACE = "kube-system"
DASHBOARD_IMAGE = "kubernetesui/dashboard:v2.7.0"
SCRAPER_IMAGE = "kubernetesui/metrics-scraper:v1.0.8"
USER_NAMESPACES = ("pipeline", "katib", "automl")


def instances(site: Site) -> list[dict]:
    skip = site.dashboard.skip_login
    return [
        {"name": "kubernetes-dashboard-cluster", "scraper": "dashboard-cluster-metrics-scraper",
         "skip_login": skip == "all"},
        {"name": "kubernetes-dashboard-user1", "scraper": "dashboard-user1-metrics-scraper",
         "skip_login": skip in ("user", "all")},
    ]


def render(site: Site) -> list[dict]:
    return render_stage(
        STAGE,
        namespace=NAMESPACE,
        instances=instances(site),
        user_namespaces=USER_NAMESPACES,
        dashboard_image=DASHBOARD_IMAGE,
        scraper_image=SCRAPER_IMAGE,
        **pod_values(site, STAGE),
    )
