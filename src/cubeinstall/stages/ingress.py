"""ingress: on every cluster, upstream's Istio Gateways and how users reach them.

The platform binds the VirtualServices of the notebooks, services and inference
services it starts to ``kubeflow/kubeflow-gateway`` (and ``-8080``) of the cluster
they run in (cube-studio myapp/views/view_notebook.py, utils/py/py_k8s.py
create_istio_ingress): each cluster needs both Gateways and an exposure of its own.

- Gateways ``kubeflow/kubeflow-gateway`` (80) and ``kubeflow-gateway-8080`` exactly as
  the pinned gateway.yaml (start.sh:115), hosts ``'*'``: the platform's VirtualServices
  carry host ``'*'``, the cluster's HOST or ``<service>.<SERVICE_DOMAIN>``; a Gateway
  limited to one name would drop the others. Typed patch: each port gets the name
  Istio 1.30's schema requires (``http``).
- Service ``istio-system/cube-ingress`` (externalIPs or NodePorts: the site's
  ``gateway`` on the first cluster, ``clusters[].gateway`` on the others) rather than
  patching upstream's Service as start.sh:152 does.

Sites installed before this stage existed had these objects applied by the gateway
stage: this one takes them over in place (same objects, its label), and the gateway
stage's prune and uninstall leave them alone (``took_over_from`` on the registry); until
it ran, its own uninstall removes them where they still carry the gateway stage's label.
"""

from __future__ import annotations

import copy

from cubeinstall.render.engine import render_stage
from cubeinstall.site.model import Site
from cubeinstall.upstream import manifests

STAGE = "ingress"
UPSTREAM = ("cube-studio",)
GATEWAY_FILE = "install/kubernetes/gateway.yaml"
GATEWAY = "kubeflow/kubeflow-gateway"  # what every VirtualService of the platform binds


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    gateway = site.gateway_of(site.cluster)
    objects = [named_ports(gw) for gw in manifests.objects(site, "cube-studio", [GATEWAY_FILE])]
    return objects + render_stage(
        STAGE,
        expose=gateway.expose,
        addresses=gateway.addresses,
        node_port_http=gateway.node_port_http,
        node_port_http_alt=gateway.node_port_http_alt,
    )


def named_ports(gateway: dict) -> dict:
    """Istio 1.30's Gateway schema requires ``port.name`` (1.15 did not): ``http``."""
    gateway = copy.deepcopy(gateway)
    for server in gateway["spec"]["servers"]:
        server["port"].setdefault("name", server["port"]["protocol"].lower())
    return gateway
