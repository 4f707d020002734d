"""namespaces: the platform namespaces, their labels, the hubsecret pull secret, and the
service accounts the platform's workloads run as, in every cluster.

Namespaces and labels as upstream's create_ns_secret.sh (platform.PLATFORM_NAMESPACES,
``istio-injection=disabled`` except on ``service``). The RBAC is upstream's, unchanged,
from the files start.sh applies (:30, :124):

- sa-rbac.yaml: ServiceAccount ``pipeline/kubeflow-pipeline`` bound in ``pipeline`` to
  ClusterRole ``kubeflow-clusterrole`` (pods, jobs, the training CRDs ...: what a pipeline
  step needs to start distributed training); ServiceAccount/Role/RoleBinding
  ``automl/nni`` (the platform's NNI experiments run as ``nni``);
- kubeflow/sa-rbac.yaml: ClusterRole ``kubeflow-admin``, ServiceAccount
  ``jupyter/jupyter-user`` with ClusterRole ``jupyter-user`` bound in ``pipeline``.

sa-rbac-cluster.yaml, the cluster-wide variant (``*`` rights, ClusterRoleBindings), is
applied by neither start.sh nor start-with-kubesphere.sh and is not rendered.
"""

from __future__ import annotations

from cubeinstall.render.engine import render_stage
from cubeinstall.render.pull_secret import pull_secret
from cubeinstall.site import platform
from cubeinstall.site.model import Site
from cubeinstall.upstream import manifests

STAGE = "namespaces"
UPSTREAM = ("cube-studio",)
RBAC_FILES = ("install/kubernetes/sa-rbac.yaml", "install/kubernetes/kubeflow/sa-rbac.yaml")


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    namespaces = [{"name": ns, "labels": platform.namespace_labels(ns)}
                  for ns in platform.platform_namespaces(site)]
    objects = render_stage(STAGE, namespaces=namespaces)
    if platform.registry_login(site) is not None:
        for ns in platform.platform_namespaces(site) + platform.SYSTEM_NAMESPACES:
            objects.append(pull_secret(site, ns))
    return objects + manifests.objects(site, "cube-studio", RBAC_FILES)
