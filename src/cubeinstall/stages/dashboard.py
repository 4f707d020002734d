"""dashboard: the platform's two Kubernetes dashboards, in kube-system (upstream's
dashboard/v2.6.1-cluster.yaml and v2.6.1-user.yaml, start.sh:36-37).

- ``kubernetes-dashboard-cluster`` at ``/k8s/dashboard/cluster/``: ClusterRole
  ``kubernetes-dashboard-cluster`` (every right) bound to its ServiceAccount.
- ``kubernetes-dashboard-user1`` at ``/k8s/dashboard/user1/`` (config.py
  K8S_DASHBOARD_USER): ClusterRoles ``kubernetes-dashboard-{pipeline,jupyter,automl,service,
  aihub}`` bound by RoleBindings in those namespaces (pods, logs, events, services, and
  pods/exec in pipeline, jupyter and service: the platform opens a shell there), plus
  ``kubernetes-dashboard-minimal`` (nodes and namespaces, metrics, its own Secrets).

From upstream, unchanged: every ClusterRole, Role and binding, and the Secrets and the
ConfigMap the dashboards keep their state in -- without their data (upstream's empty
``csrf``), so that an apply never resets the keys the dashboards write at first start.

Written here instead (templates/dashboard): the Deployments and Services, with the
kubernetesui/dashboard v2.7.0 image (upstream: v2.6.1, and cube-studio's own build of it
for user1), plain HTTP on 9090 (TLS ends at the gateway) with ``--enable-insecure-login``
so a token login works over HTTP, non-root and read-only; the metrics scrapers run as
ServiceAccount ``dashboard-metrics-scraper`` (metrics.k8s.io only), not as the
dashboards' accounts.

"Skip login" lets anyone who reaches the URL act as the dashboard's account. Upstream
offers it on both; the gateway's only check is that a ``myapp_username`` cookie is
present, which anyone can send. By default (``dashboard.skip_login: user``) only the user
dashboard offers it: skip on the cluster dashboard would give every right on the cluster
to anyone who reaches the gateway (``all`` restores upstream's behaviour).
"""

from __future__ import annotations

import copy

from cubeinstall.render.engine import render_stage
from cubeinstall.site.model import Site
from cubeinstall.stages.workloads import pod_values
from cubeinstall.upstream import manifests

STAGE = "dashboard"
UPSTREAM = ("cube-studio",)
FILES = ("install/kubernetes/dashboard/v2.6.1-cluster.yaml",
         "install/kubernetes/dashboard/v2.6.1-user.yaml")
NAMESPACE = "kube-system"
DASHBOARD_IMAGE = "kubernetesui/dashboard:v2.7.0"
SCRAPER_IMAGE = "kubernetesui/metrics-scraper:v1.0.8"
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
STATE_KINDS = ("Secret", "ConfigMap")  # the dashboards' own state (their names are fixed)


def instances(site: Site) -> list[dict]:
    skip = site.dashboard.skip_login
    return [
        {"name": "kubernetes-dashboard-cluster", "scraper": "dashboard-cluster-metrics-scraper",
         "skip_login": skip == "all"},
        {"name": "kubernetes-dashboard-user1", "scraper": "dashboard-user1-metrics-scraper",
         "skip_login": skip in ("user", "all")},
    ]


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    return upstream_objects(site) + render_stage(
        STAGE,
        namespace=NAMESPACE,
        instances=instances(site),
        dashboard_image=DASHBOARD_IMAGE,
        scraper_image=SCRAPER_IMAGE,
        **pod_values(site, STAGE),
    )


def upstream_objects(site: Site) -> list[dict]:
    """RBAC and state objects of both files, once each (both files declare the state)."""
    chosen: dict[tuple[str, str, str], dict] = {}
    for obj in manifests.objects(site, "cube-studio", FILES):
        if obj["kind"] in RBAC_KINDS:
            chosen.setdefault(identity(obj), obj)
        elif obj["kind"] in STATE_KINDS:
            chosen.setdefault(identity(obj), without_data(obj))
    return list(chosen.values())


def identity(obj: dict) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def without_data(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj.pop("data", None)
    return obj
