"""gateway: upstream's VirtualServices on the platform cluster: how users reach its UIs.

From the pinned virtual.yaml (start.sh:116); the Gateways they bind and the
exposure Service are the ingress stage's (every cluster).

- upstream's VirtualServices (names and namespaces kept, so a start.sh site is taken
  over): ``/`` to the platform's frontend (its nginx proxies the API to the backend),
  ``/k8s/dashboard/cluster/`` and ``/k8s/dashboard/user1/`` (config.py
  K8S_DASHBOARD_CLUSTER/USER), ``/grafana/``, ``/labelstudio/``; each route only when
  the stage serving it is enabled (labelstudio: always, as upstream). Every route keeps
  upstream's ``myapp_username`` cookie match.

Typed patches: every VirtualService's hosts are ``'*'`` and the site's domain. The
platform gives its notebook VirtualServices the cluster's HOST (the domain) as host, and
Envoy serves a request for the domain only from the routes of that exact host: with
``'*'`` alone, ``/`` and the dashboards would vanish for the domain once the first
notebook starts (what upstream's comments in virtual.yaml warn about). Grafana: the
prometheus stage serves it on its Service port under /grafana/ itself
(serve_from_sub_path), so its route keeps the prefix.

cubeinstall's extra UIs (kibana, argo-server) get VirtualService ``kubeflow/cube-studio``
in the same form.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from cubeinstall.core.errors import CubeError
from cubeinstall.render.engine import render_stage
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.stages.ingress import GATEWAY
from cubeinstall.upstream import manifests

STAGE = "gateway"
UPSTREAM = ("cube-studio",)
VIRTUAL_FILE = "install/kubernetes/virtual.yaml"
WILDCARD = "*"
# The cookie the platform sets at login; upstream's only gate in front of its UIs.
LOGGED_IN = {"cookie": {"regex": ".*myapp_username=.*"}}

# upstream VirtualService (namespace, name) -> the stage that serves its destination
UPSTREAM_ROUTES = {
    ("infra", "infra-kubeflow-dashboard"): "cube",
    ("kube-system", "kube-system-k8s-dashboard-cluster"): "dashboard",
    ("kube-system", "kube-system-k8s-dashboard-user1"): "dashboard",
    ("monitoring", "monitoring-grafana"): "prometheus",
    ("kubeflow", "kubeflow-labelstudio"): None,  # not installed here; upstream routes it anyway
}
GRAFANA = ("monitoring", "monitoring-grafana")
GRAFANA_PORT = 8080  # the prometheus stage's Service grafana, as upstream's


@dataclass(frozen=True)
class Route:
    """A route of cubeinstall's own VirtualService ``kubeflow/cube-studio``."""

    name: str
    prefix: str
    host: str
    port: int
    stage: str  # the route exists only when this stage is enabled
    rewrite: str | None = None


EXTRA_VIRTUAL_SERVICE = "cube-studio"
ROUTES = (
    Route("kibana", "/kibana/", "kibana.logging.svc.cluster.local", 5601, "efk", rewrite="/"),
    Route("argo", "/argo/", "argo-server.argo.svc.cluster.local", 2746, "kubeflow",
          rewrite="/"),
)


def enabled(site: Site, stage: str | None) -> bool:
    return stage is None or registry.get(stage).enabled(site)


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    hosts = [WILDCARD, site.domain]
    objects = [for_site(vs, hosts) for vs in manifests.objects(site, "cube-studio", [VIRTUAL_FILE])
                if enabled(site, serving_stage(vs))]
    routes = [argo_route(site) if route.name == "argo" else route
              for route in ROUTES if enabled(site, route.stage)]
    routes = [route for route in routes if route is not None]
    return objects + render_stage(
        STAGE,
        virtual_service=EXTRA_VIRTUAL_SERVICE,
        hosts=hosts,
        gateway=GATEWAY,
        logged_in=LOGGED_IN,
        routes=routes,
    )


def argo_route(site: Site) -> Route | None:
    """Ours, or with components.kubeflow.mode existing the running argo-server's Service
    (components.kubeflow.server, found in the cluster when not set); none when it has none."""
    argo = next(route for route in ROUTES if route.name == "argo")
    if site.component(argo.stage).mode != "existing":
        return argo
    server = site.component(argo.stage).server
    if not server:
        return None
    from cubeinstall.kube.argo import parse_server

    found = parse_server(server)
    return dataclasses.replace(argo, host=found.host, port=found.port)


def serving_stage(vs: dict) -> str | None:
    try:
        return UPSTREAM_ROUTES[key(vs)]
    except KeyError:
        raise CubeError(f"cube-studio {VIRTUAL_FILE}: VirtualService {'/'.join(key(vs))} is "
                        "not known to cubeinstall",
                        hint="a version other than the pinned one: tell cubeinstall which stage "
                             "serves it (stages/gateway.py UPSTREAM_ROUTES)") from None


def key(obj: dict) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def for_site(vs: dict, hosts: list[str]) -> dict:
    """The site's hosts; grafana's route to the prometheus stage's Grafana."""
    vs = copy.deepcopy(vs)
    vs["spec"]["hosts"] = list(hosts)
    if key(vs) == GRAFANA:
        for http in vs["spec"]["http"]:
            http.pop("rewrite", None)
            for route in http["route"]:
                route["destination"]["port"]["number"] = GRAFANA_PORT
    return vs
