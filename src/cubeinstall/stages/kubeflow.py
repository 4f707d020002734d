"""kubeflow: Argo Workflows (pipelines) and the Kubeflow training-operator, both pinned upstream.

Both projects publish kustomize trees, not applicable files; the assembly kustomize
would do is stated here, in typed code:

- Argo Workflows, ``manifests/cluster-install``: full CRDs, workflow-controller and
  argo-server with their ServiceAccounts, RBAC, ConfigMap and PriorityClass, all in
  namespace ``argo`` (subjects included); the ``:latest`` images pinned to the
  version, the executor image named explicitly (so it is mirrored and pinned too),
  argo-server in plain HTTP under /argo/ (the gateway's route). The controller is
  cluster-wide: it runs the platform's workflows in ``pipeline``, where
  their pods (ServiceAccount ``kubeflow-pipeline``, or ``default``) get the executor's
  rights (writing WorkflowTaskResults).
- The platform's Workflows run as ServiceAccount ``pipeline-runner``
  (view_pipeline.py ``serviceAccountName``): upstream's argo/pipeline-runner-rolebinding.yaml
  as it is (the account, ClusterRole ``pipeline-runner`` with every right, its binding).
- They set ``archiveLogs``, so the controller needs an artifact repository: upstream's
  (cube-studio argo/install-3.4.3-all.yaml) MinIO ``kubeflow/minio`` on its volume
  ``kubeflow-minio-pv`` (argo/minio-pv-pvc-hostpath.yaml, under the site's mount point), the
  Secret ``pipeline/my-minio-cred`` workflows read, and the ConfigMap's artifactRepository.
  The credentials are upstream's ``minio``/``minio123``: the platform's log viewer has them
  written in its code (view_workflow.py), so another value would break it; MinIO is reached
  only inside the cluster. MinIO reads them from a Secret of its own namespace.
- training-operator, ``overlays/standalone``: namespace ``kubeflow``, the webhook
  configuration renamed and pointed at Service ``training-operator`` (webhook/patch.yaml),
  the image tag pinned, and the empty Secret ``training-operator-webhook-cert`` the
  operator fills with its certificate (it must exist before the operator starts).

``mode: existing`` (start.sh's Argo 3.4.3 in ``kubeflow``, or another): Argo is not
installed (no namespace ``argo``, controller, server or CRDs); the pipeline RBAC,
pipeline-runner, MinIO (the platform's log viewer reads it) and the training-operator
still are. ``check`` verifies the running Argo (kube/argo.py) and the gateway routes
/argo/ to its argo-server, found in the cluster (``with_existing_server``).
"""

from __future__ import annotations

import copy

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import ConfigError, StageFailed
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.site.platform import registry_login
from cubeinstall.stages.existing import existing, verify_crds
from cubeinstall.upstream import catalog, manifests, patches
from cubeinstall.upstream.namespaces import own_namespace

STAGE = "kubeflow"
UPSTREAM = ("argo-workflows", "training-operator", "cube-studio")
PIPELINE_RUNNER_FILE = "install/kubernetes/argo/pipeline-runner-rolebinding.yaml"
CUBE_ARGO_FILE = "install/kubernetes/argo/install-3.4.3-all.yaml"  # MinIO, controller settings
MINIO_VOLUME_FILE = "install/kubernetes/argo/minio-pv-pvc-hostpath.yaml"
CONTROLLER_CONFIG = "workflow-controller-configmap"
MINIO_SECRET = "my-minio-cred"
MINIO_NAMESPACE = "kubeflow"
ARGO_NAMESPACE = "argo"
ARGO_PATH = "/argo/"  # the gateway stage's route to argo-server
PIPELINE_NAMESPACE = "pipeline"
PIPELINE_SERVICE_ACCOUNTS = ("kubeflow-pipeline", "default")
EXECUTOR = "quay.io/argoproj/argoexec"
TRAINING_NAMESPACE = "kubeflow"
TRAINING_WEBHOOK = "validator.training-operator.kubeflow.org"
TRAINING_SERVICE = "training-operator"
TRAINING_CERT_SECRET = "training-operator-webhook-cert"


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    placement = registry.get(STAGE).placement_label(site)
    if existing(site, STAGE):  # the running Argo stays; what the platform needs besides it does not
        objects = (pipeline_rbac() + pipeline_runner(site) + artifact_store(site)
                   + training_operator(site))
        return patches.for_site(objects, site, placement)
    objects = argo(site) + pipeline_runner(site) + artifact_store(site) + training_operator(site)
    return own_namespace(site, ARGO_NAMESPACE) + patches.for_site(objects, site, placement)


def check(ctx: RunContext) -> list[Change]:
    """mode existing: the running Argo must run the platform's Workflows (kube/argo.py)."""
    if not existing(ctx.site, STAGE):
        return []
    from cubeinstall.kube import argo as running_argo
    from cubeinstall.kube.client import client_for
    from cubeinstall.kube.errors import NotFound
    from cubeinstall.kube.objects import target

    changes = verify_crds(ctx, STAGE, "Argo Workflows", running_argo.REQUIRED_CRDS)
    client = client_for(ctx)
    controllers = running_argo.controllers(client.list(client.resolve("apps/v1", "Deployment")))
    config = None
    if len(controllers) == 1:
        try:
            config = client.get(client.resolve("v1", "ConfigMap"),
                                *running_argo.config_name(controllers[0]))
        except NotFound:
            pass
    problems = running_argo.problems(controllers, config)
    if problems:
        raise StageFailed(STAGE, "components.kubeflow.mode is existing, but the running Argo "
                          "cannot run the platform's Workflows: " + "; ".join(problems)
                          + "; nothing was changed",
                          hint="fix the running Argo as each part says, or set "
                               "components.kubeflow.mode: replace and run `cubeinstall adopt` "
                               "(or mode: install on a cluster without Argo)")
    server = ctx.site.component(STAGE).server
    route = (f"the gateway routes {ARGO_PATH} to {server}" if server else
             f"no argo-server Service found: the gateway does not route {ARGO_PATH}")
    return changes + [Change(target(controllers[0]), "unchanged",
                             f"existing Argo (components.kubeflow.mode: existing); {route}")]


def with_existing_server(ctx: RunContext) -> Site:
    """The site with ``components.kubeflow.server`` found in the cluster (mode existing and
    not set in site.yaml): the gateway's /argo/ route goes to that argo-server Service.
    None found leaves it unset (start.sh runs no argo-server); several refuse."""
    site = ctx.site
    component = site.component(STAGE)
    if not registry.get(STAGE).enabled(site) or component.mode != "existing" or component.server:
        return site
    from cubeinstall.kube import argo as running_argo
    from cubeinstall.kube.client import client_for

    client = client_for(ctx)
    found = running_argo.servers(client.list(client.resolve("apps/v1", "Deployment")),
                                 client.list(client.resolve("v1", "Service")))
    if len(found) > 1:
        raise ConfigError("components.kubeflow.server: more than one argo-server Service "
                          "found (" + ", ".join(map(str, found)) + ")",
                          hint="set components.kubeflow.server to the one the gateway routes "
                               "/argo/ to")
    if not found:
        return site
    components = {**site.components,
                  STAGE: component.model_copy(update={"server": str(found[0])})}
    return site.model_copy(update={"components": components})


# -- Argo Workflows ------------------------------------------------------------------------------


def argo(site: Site) -> list[dict]:
    pinned = catalog.resolve(site, "argo-workflows")
    objects = patches.set_namespace(manifests.objects(site, "argo-workflows"), ARGO_NAMESPACE)
    objects = patches.pin_images(objects, pinned.pins)
    executor = pinned.image(EXECUTOR)
    credentials = registry_login(site) is not None
    settings = upstream_controller_settings(site)
    return [configure_argo(obj, executor, credentials, settings) for obj in objects] + pipeline_rbac()


def configure_argo(obj: dict, executor: str, pull_secret: bool, settings: dict[str, str]) -> dict:
    """The controller's executor image, its ConfigMap (the argo project ships it empty:
    cube-studio's ``settings``, artifact repository included), and an argo-server reachable
    through the platform's gateway."""
    name = (obj.get("metadata") or {}).get("name")
    if obj["kind"] == "Deployment" and name == "workflow-controller":
        obj = copy.deepcopy(obj)
        for container in obj["spec"]["template"]["spec"]["containers"]:
            if container["name"] == "workflow-controller":
                container["args"] = ["--executor-image", executor]
    elif obj["kind"] == "Deployment" and name == "argo-server":
        # The gateway routes /argo/ (rewritten to /) to port 2746 in plain HTTP; TLS ends at
        # the ingress gateway. The UI builds its links under /argo/: the flag was renamed
        # (--basehref, --base-href) but both releases read one of these variables.
        obj = copy.deepcopy(obj)
        for container in obj["spec"]["template"]["spec"]["containers"]:
            if container["name"] == "argo-server":
                container["args"] = ["server", "--secure=false"]
                container["env"] = [*(container.get("env") or []),
                                    {"name": "BASE_HREF", "value": ARGO_PATH},
                                    {"name": "ARGO_BASE_HREF", "value": ARGO_PATH}]
                container["readinessProbe"]["httpGet"]["scheme"] = "HTTP"
    elif obj["kind"] == "ConfigMap" and name == "workflow-controller-configmap":
        obj = copy.deepcopy(obj)
        data = {**settings, "executor": "imagePullPolicy: IfNotPresent\n"}
        if pull_secret:  # workflow pods pull from the site registry, as every platform pod
            data["workflowDefaults"] = "spec:\n  imagePullSecrets:\n    - name: hubsecret\n"
        obj["data"] = {**(obj.get("data") or {}), **data}
    return obj


def pipeline_rbac() -> list[dict]:
    """What a workflow pod in ``pipeline`` needs from the API: report its step results."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "argo-executor", "namespace": PIPELINE_NAMESPACE},
        "rules": [
            {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
             "verbs": ["create", "patch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "patch"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "watch"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "argo-executor", "namespace": PIPELINE_NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "argo-executor"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": PIPELINE_NAMESPACE}
                     for account in PIPELINE_SERVICE_ACCOUNTS],
    }
    return [role, binding]


def upstream_controller_settings(site: Site) -> dict[str, str]:
    """cube-studio's workflow-controller-configmap data: parallelism, the artifact
    repository (MinIO, archiveLogs) and metrics."""
    [config] = [obj for obj in manifests.objects(site, "cube-studio", [CUBE_ARGO_FILE])
                if (obj["kind"], obj["metadata"]["name"]) == ("ConfigMap", CONTROLLER_CONFIG)]
    return dict(config["data"])


def artifact_store(site: Site) -> list[dict]:
    """MinIO, its volume and the credentials Secrets, from cube-studio's argo/ files."""
    from cubeinstall.stages import pv_pvc

    wanted = {("Service", "minio"), ("Deployment", "minio"), ("Secret", MINIO_SECRET)}
    objects = [obj for obj in manifests.objects(site, "cube-studio", [CUBE_ARGO_FILE])
               if (obj["kind"], obj["metadata"]["name"]) in wanted]
    objects = patches.secret_data([minio_reads_its_secret(obj) for obj in objects])
    [pv, pvc] = manifests.objects(site, "cube-studio", [MINIO_VOLUME_FILE])
    volume = [pv_pvc.for_site(site, pv_pvc.bind(pv, pvc)), pv_pvc.for_site(site, pvc)]
    own_secret = next(obj for obj in objects if obj["kind"] == "Secret")
    return objects + volume + [{**own_secret, "metadata": {
        **own_secret["metadata"], "namespace": MINIO_NAMESPACE}}]


def minio_reads_its_secret(obj: dict) -> dict:
    """MINIO_ROOT_USER/PASSWORD from my-minio-cred of MinIO's namespace, not literals."""
    if obj["kind"] != "Deployment":
        return obj
    obj = copy.deepcopy(obj)
    keys = {"MINIO_ROOT_USER": "accesskey", "MINIO_ROOT_PASSWORD": "secretkey"}
    for container in obj["spec"]["template"]["spec"]["containers"]:
        container["env"] = [
            {"name": env["name"], "valueFrom": {"secretKeyRef": {"name": MINIO_SECRET,
                                                                 "key": keys[env["name"]]}}}
            if env["name"] in keys else env for env in container.get("env") or []]
    return obj


def pipeline_runner(site: Site) -> list[dict]:
    """The ServiceAccount the platform's Workflows name, with upstream's RBAC."""
    return manifests.objects(site, "cube-studio", [PIPELINE_RUNNER_FILE])


# -- training-operator ----------------------------------------------------------------------------


def training_operator(site: Site) -> list[dict]:
    pinned = catalog.resolve(site, "training-operator")
    objects = [rename_webhook(obj) for obj in manifests.objects(site, "training-operator")]
    objects = patches.set_namespace(objects, TRAINING_NAMESPACE)
    objects = patches.pin_images(objects, pinned.pins)
    cert = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": TRAINING_CERT_SECRET, "namespace": TRAINING_NAMESPACE}}
    return objects + [cert]


def rename_webhook(obj: dict) -> dict:
    """webhook/patch.yaml: the configuration's name and every webhook's service name."""
    if obj["kind"] != "ValidatingWebhookConfiguration":
        return obj
    obj = copy.deepcopy(obj)
    obj["metadata"]["name"] = TRAINING_WEBHOOK
    obj["metadata"].setdefault("labels", {})["control-plane"] = "kubeflow-training-operator"
    for webhook in obj.get("webhooks") or []:
        webhook["clientConfig"]["service"]["name"] = TRAINING_SERVICE
    return obj
