"""gateway: Istio Gateways on 80 and 8080 and the VirtualService routing every enabled UI."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cubeinstall.render.engine import render_stage
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site

STAGE = "gateway"
GATEWAYS = ({"name": "kubeflow-gateway", "port": 80}, {"name": "kubeflow-gateway-8080", "port": 8080})


@dataclass(frozen=True)
class Route:
    name: str
    prefix: str
    host: str
    port: int
    stage: str  # the route exists only when this stage is enabled
    rewrite: str | None = None
    timeout: str | None = None


# Item 18, in match order: the platform's catch-all "/" comes last.
ROUTES = (
    Route("k8s-dashboard-cluster", "/k8s/dashboard/cluster/",
          "kubernetes-dashboard-cluster.kube-system.svc.cluster.local", 9090, "dashboard",
          rewrite="/"),
    Route("k8s-dashboard-user", "/k8s/dashboard/pipeline/",
          "kubernetes-dashboard-user1.kube-system.svc.cluster.local", 9090, "dashboard",
          rewrite="/"),
    Route("grafana", "/grafana/", "grafana.monitoring.svc.cluster.local", 3000, "prometheus"),
    Route("kibana", "/kibana/", "kibana.logging.svc.cluster.local", 5601, "efk", rewrite="/"),
    Route("argo", "/argo/", "argo-server.argo.svc.cluster.local", 2746, "kubeflow", rewrite="/"),
    Route("cube-frontend", "/frontend/", "kubeflow-dashboard-frontend.infra.svc.cluster.local",
          80, "cube"),
    Route("cube", "/", "kubeflow-dashboard.infra.svc.cluster.local", 80, "cube",
          timeout="300s"),
)


def enabled_routes(site: Site) -> list[Route]:
    return [route for route in ROUTES if registry.get(route.stage).enabled(site)]


def render(site: Site) -> list[dict]:
    return render_stage(
        STAGE,
        domain=site.domain,
        gateways=GATEWAYS,
        routes=[asdict(route) for route in enabled_routes(site)],
        expose=site.gateway.expose,
        addresses=site.gateway.addresses,
        node_port_http=site.gateway.node_port_http,
        node_port_http_alt=site.gateway.node_port_http_alt,
    )
