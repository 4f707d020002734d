"""gateway: upstream's Istio Gateways and VirtualServices, and how users reach the gateway.

From the pinned gateway.yaml and virtual.yaml (start.sh:115-116):

- Gateways ``kubeflow/kubeflow-gateway`` (80) and ``kubeflow-gateway-8080`` exactly as
  upstream, hosts ``'*'``: the platform creates VirtualServices of its own on them
  (notebooks, services, inference) with host ``'*'``, the site's domain or
  ``<service>.<SERVICE_DOMAIN>``; a Gateway limited to the domain would drop the others.
- upstream's VirtualServices (names and namespaces kept, so a start.sh site is taken
  over): ``/`` to the platform's frontend (its nginx proxies the API to the backend),
  ``/k8s/dashboard/cluster/`` and ``/k8s/dashboard/user1/`` (config.py
  K8S_DASHBOARD_CLUSTER/USER), ``/grafana/``, ``/labelstudio/``; each route only when
  the stage serving it is enabled (labelstudio: always, as upstream). Every route keeps
  upstream's ``myapp_username`` cookie match.

Typed patches: each Gateway port gets the name Istio 1.30's schema requires (``http``);
every VirtualService's hosts are ``'*'`` and the site's domain. The
platform gives its notebook VirtualServices the cluster's HOST (the domain) as host, and
Envoy serves a request for the domain only from the routes of that exact host: with
``'*'`` alone, ``/`` and the dashboards would vanish for the domain once the first
notebook starts (what upstream's comments in virtual.yaml warn about). Grafana: the
prometheus stage serves it on its Service port under /grafana/ itself
(serve_from_sub_path), so its route keeps the prefix.

cubeinstall's extra UIs (kibana, argo-server) get VirtualService ``kubeflow/cube-studio``
in the same form. The ingress gateway is reached through Service ``cube-ingress``
(externalIPs or NodePorts, ``gateway.expose``) rather than by patching upstream's
Service as start.sh:152 does.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from cubeinstall.core.errors import CubeError
from cubeinstall.render.engine import render_stage
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.upstream import manifests

STAGE = "gateway"
UPSTREAM = ("cube-studio",)
GATEWAY_FILE = "install/kubernetes/gateway.yaml"
VIRTUAL_FILE = "install/kubernetes/virtual.yaml"
GATEWAY = "kubeflow/kubeflow-gateway"
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
    objects = [named_ports(gw) for gw in manifests.objects(site, "cube-studio", [GATEWAY_FILE])]
    objects += [for_site(vs, hosts) for vs in manifests.objects(site, "cube-studio", [VIRTUAL_FILE])
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
        expose=site.gateway.expose,
        addresses=site.gateway.addresses,
        node_port_http=site.gateway.node_port_http,
        node_port_http_alt=site.gateway.node_port_http_alt,
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


def named_ports(gateway: dict) -> dict:
    """Istio 1.30's Gateway schema requires ``port.name`` (1.15 did not): ``http``."""
    gateway = copy.deepcopy(gateway)
    for server in gateway["spec"]["servers"]:
        server["port"].setdefault("name", server["port"]["protocol"].lower())
    return gateway


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
