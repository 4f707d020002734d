"""An Argo Workflows the cluster already runs (``components.kubeflow.mode: existing``).

What the platform submits (cube-studio view_pipeline.py make_workflow_yaml): Workflows
``argoproj.io/v1alpha1`` in namespace ``pipeline`` with ``serviceAccountName:
pipeline-runner``, ``archiveLogs: true``, ``ttlStrategy``, a DAG template, retries and
deadlines; no controller instance id. So the running workflow-controller must:
- be the only one, and available;
- be a release the platform runs on: 3.4 (start.sh's, install-3.4.3-all.yaml) up to 4.x
  (what cubeinstall installs); older ones lack the WorkflowTaskResult reporting the 3.4
  executor image relies on, a 5.x is unknown;
- watch ``pipeline`` (cluster-wide, or ``--namespaced`` with ``--managed-namespace
  pipeline``) and have no ``instanceID`` (it would ignore Workflows without that label);
- have an artifact repository: ``archiveLogs`` fails every Workflow without one.
Its argo-server (image ``argocli``; start.sh runs none) is found through the Service
selecting its pods: the gateway routes ``/argo/`` there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cubeinstall.kube.controllers import (
    ARGO_SERVER,
    CONTROLLERS,
    config_map_of,
    containers,
    flags,
    images,
    minor_version,
    repository,
    runs,
)
from cubeinstall.kube.objects import target
from cubeinstall.site.model import SERVER_FORM

WORKFLOW_CONTROLLER = CONTROLLERS[0]
PIPELINE_NAMESPACE = "pipeline"
OLDEST, NEWEST_MAJOR = (3, 4), 4
# What the platform creates (Workflow) and what a 3.4+ executor reports through.
REQUIRED_CRDS = ("workflows.argoproj.io", "workflowtaskresults.argoproj.io")


@dataclass(frozen=True)
class Server:
    """Where the existing argo-server answers: its Service in the cluster."""

    namespace: str
    name: str
    port: int

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}"


def parse_server(text: str) -> Server:
    """``namespace/name:port`` (components.kubeflow.server)."""
    match = re.fullmatch(SERVER_FORM, text)  # the site's rules checked the form
    return Server(match[1], match[2], int(match[3]))


def version(deployment: dict) -> tuple[int, int] | None:
    found = [minor_version(image) for image in images(deployment)
             if repository(image).endswith(WORKFLOW_CONTROLLER.images)]
    return found[0] if found else None


def controllers(deployments: list[dict]) -> list[dict]:
    return [d for d in deployments if runs(d, WORKFLOW_CONTROLLER)]


def config_name(controller: dict) -> tuple[str, str]:
    """(namespace, name) of the controller's ConfigMap."""
    return (controller["metadata"].get("namespace"),
            config_map_of(controller, WORKFLOW_CONTROLLER))


def problems(controllers: list[dict], config: dict | None) -> list[str]:
    """Why the running Argo cannot run the platform's Workflows (empty: it can).
    ``config``: the controller's ConfigMap, None when it does not exist."""
    if not controllers:
        return ["no Argo workflow-controller runs in the cluster (no Deployment with a "
                "workflow-controller image)"]
    if len(controllers) > 1:
        return ["more than one Argo workflow-controller runs ("
                + ", ".join(target(d) for d in controllers)
                + "): both would act on every Workflow; remove all but one"]
    [controller] = controllers
    found = []
    running = version(controller)
    if running is None or running < OLDEST or running[0] > NEWEST_MAJOR:
        shown = "an unknown version" if running is None else f"{running[0]}.{running[1]}"
        found.append(f"{target(controller)} runs Argo {shown}; the platform's Workflows run "
                     f"on {OLDEST[0]}.{OLDEST[1]} (start.sh's 3.4.3) up to {NEWEST_MAJOR}.x")
    status = controller.get("status") or {}
    if not status.get("availableReplicas"):
        found.append(f"{target(controller)} has no available replica")
    options = flags(controller)
    managed = options.get("managed-namespace")
    if options.get("namespaced") and managed not in (PIPELINE_NAMESPACE, None):
        found.append(f"{target(controller)} watches only namespace {managed} "
                     f"(--namespaced --managed-namespace); the platform's Workflows are in "
                     f"{PIPELINE_NAMESPACE}")
    elif options.get("namespaced") and managed is None and (
            controller["metadata"].get("namespace") != PIPELINE_NAMESPACE):
        found.append(f"{target(controller)} watches only its own namespace (--namespaced); "
                     f"the platform's Workflows are in {PIPELINE_NAMESPACE}")
    name = "ConfigMap {}/{}".format(*config_name(controller))
    data = (config or {}).get("data") or {}
    if config is None:
        found.append(f"{name}, the controller's configuration, does not exist: it has no "
                     "artifact repository, and the platform's Workflows archive their logs "
                     "(archiveLogs)")
    elif not data.get("artifactRepository"):
        found.append(f"{name} names no artifactRepository; the platform's Workflows archive "
                     "their logs (archiveLogs) and fail without one")
    if data.get("instanceID"):
        found.append(f"{name} sets instanceID {data['instanceID']!r}: the controller ignores "
                     "Workflows without that label, and the platform's have none")
    return found


def servers(deployments: list[dict], services: list[dict]) -> list[Server]:
    """The Services in front of argo-server pods, each with the port reaching the server."""
    found = []
    for deployment in deployments:
        if not runs(deployment, ARGO_SERVER):
            continue
        namespace = deployment["metadata"].get("namespace")
        template = deployment["spec"]["template"]
        labels = (template.get("metadata") or {}).get("labels") or {}
        ports = {p.get("name"): p["containerPort"] for c in containers(deployment)
                 for p in c.get("ports") or []}
        for service in services:
            selector = (service.get("spec") or {}).get("selector") or {}
            if service["metadata"].get("namespace") != namespace or not selector or any(
                    labels.get(k) != v for k, v in selector.items()):
                continue
            for port in service["spec"].get("ports") or []:
                aim = port.get("targetPort", port["port"])
                if aim in ports.values() or aim in ports:
                    found.append(Server(namespace, service["metadata"]["name"], port["port"]))
                    break
    return found
