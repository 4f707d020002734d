"""cube: the cube-studio platform itself, in infra, from its own install files (pinned).

The objects are upstream's ``install/kubernetes/cube`` (base + overlays, as start.sh's
``kubectl apply -k`` makes them), changed only by typed patches:

- Deployments kubeflow-dashboard (web backend), -frontend (nginx), -schedule (Celery
  beat), -worker (Celery worker), kubeflow-watch (supervisord: workflow and service
  watchers); Services kubeflow-dashboard and -frontend; ServiceAccount
  kubeflow-dashboard with its ClusterRole; ConfigMap nginx-configmap (the frontend's
  default.conf, proxying to kubeflow-dashboard.infra) -- all as upstream writes them.
- The overlay's generated ConfigMaps, without kustomize's hash suffix (a config digest
  on the pod templates rolls the pods instead): ``kubeflow-dashboard-config`` (config.py
  with the site's values, entrypoint.sh, project.py: stages/cube_config.py) and
  ``deploy-config`` (STAGE, REDIS_HOST, REDIS_PORT, ENVIRONMENT; MYSQL_SERVICE without
  credentials, for people reading it).
- Secret ``cube-credentials``: MYSQL_SERVICE (full URL) and REDIS_PASSWORD; the pods
  read these two from it instead of from deploy-config (no password in a ConfigMap).
- Deliberate differences from upstream (each a patch below): the site's image
  repository and tag (the overlay's ``images``), pull policy IfNotPresent, nodeSelector
  on the placement label instead of upstream's nodeAffinity on the same label,
  ``kubernetes-config`` mounted from a Secret (it may hold credentials), no token
  mounted into the nginx pod and a readiness probe on its port, resource requests on
  kubeflow-watch, pull secret only when the registry needs a login.
"""

from __future__ import annotations

from urllib.parse import quote

from cubeinstall.render import naming
from cubeinstall.site import platform
from cubeinstall.site import stages as registry
from cubeinstall.site.model import Site
from cubeinstall.stages import cube_config
from cubeinstall.stages.workloads import opaque_secret, roll_on_config_change
from cubeinstall.upstream import manifests, patches
from cubeinstall.upstream.kinds import containers, pod_spec

STAGE = "cube"
COMPONENT = cube_config.COMPONENT
UPSTREAM = (COMPONENT,)  # the platform's own install tree, pinned
NAMESPACE = "infra"  # overlays/kustomization.yml
CREDENTIALS_SECRET = "cube-credentials"
DEPLOY_CONFIG = "deploy-config"
PLATFORM_DATABASE = "kubeflow"

BASE = "install/kubernetes/cube/base/"
UPSTREAM_FILES = tuple(BASE + name for name in (
    "sa-rbac.yaml", "deploy-backend.yaml", "deploy-frontend.yaml", "deploy-schedule.yaml",
    "deploy-worker.yaml", "deploy-watch.yaml"))
# The Deployments running the backend image (each reads config.py).
BACKEND_DEPLOYMENTS = ("kubeflow-dashboard", "kubeflow-dashboard-schedule",
                       "kubeflow-dashboard-worker", "kubeflow-watch")
# Images the overlay pins (kustomization.yml ``images``): the site's repository and tag.
PLATFORM_IMAGES = ("ccr.ccs.tencentyun.com/cube-studio/kubeflow-dashboard",
                   "ccr.ccs.tencentyun.com/cube-studio/kubeflow-dashboard-frontend")
# deploy-config keys that carry a password: the pods read them from the Secret instead.
SECRET_KEYS = ("MYSQL_SERVICE", "REDIS_PASSWORD")
FRONTEND = "kubeflow-dashboard-frontend"
UPSTREAM_PLACEMENT_LABEL = "kubeflow-dashboard"  # upstream's nodeAffinity key (=true)
DEFAULT_REQUESTS = {"cpu": "10m", "memory": "100Mi"}  # upstream's request on its other pods


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    settings = deploy_config(site)
    objects = patches.set_namespace(manifests.objects(site, COMPONENT, UPSTREAM_FILES), NAMESPACE)
    objects = [_fitted(obj, site, settings) for obj in objects]
    objects = patches.for_site(objects, site, registry.get(STAGE).placement_label(site))
    objects += [
        config_map(cube_config.CONFIG_MAP, cube_config.files(site)),
        config_map(DEPLOY_CONFIG, settings),
        opaque_secret(CREDENTIALS_SECRET, NAMESPACE, {
            "MYSQL_SERVICE": mysql_url(site, with_credentials=True),
            "REDIS_PASSWORD": site.redis.password.reveal(),
        }),
    ]
    return roll_on_config_change(objects)


def config_map(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE}, "data": dict(data)}


def _fitted(obj: dict, site: Site, settings: dict[str, str]) -> dict:
    """One upstream object (already a copy) given the site's differences of the module doc."""
    spec = pod_spec(obj)
    if spec is None:
        return obj
    _drop_placement_affinity(spec)  # the site's placement label follows (nodeSelector)
    spec.pop("imagePullSecrets", None)  # render.finalize adds hubsecret when it exists
    if obj["metadata"]["name"] == FRONTEND:
        spec["automountServiceAccountToken"] = False  # nginx never calls the API
        for container in containers(spec):  # upstream has no probe: Ready must mean serving
            container.setdefault("readinessProbe", {"tcpSocket": {"port": "http"},
                                                    "periodSeconds": 10})
    for volume in spec.get("volumes") or []:
        source = volume.get("configMap") or {}
        if source.get("name") == platform.KUBECONFIG_SECRET:
            del volume["configMap"]
            volume["secret"] = {"secretName": platform.KUBECONFIG_SECRET}
    for container in containers(spec):
        container["image"] = platform_image(container["image"], site)
        # kubeflow-watch has none upstream: the others' requests, so the scheduler counts it
        container.setdefault("resources", {"requests": dict(DEFAULT_REQUESTS)})
        for variable in container.get("env") or []:
            _from_site(variable, settings)
    return obj


def _drop_placement_affinity(spec: dict) -> None:
    """Remove upstream's required node affinity on ``kubeflow-dashboard``; keep any other."""
    affinity = spec.get("affinity") or {}
    required = (affinity.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    for term in (required or {}).get("nodeSelectorTerms") or []:
        term["matchExpressions"] = [expression for expression in term.get("matchExpressions") or []
                                    if expression.get("key") != UPSTREAM_PLACEMENT_LABEL]
        if not term["matchExpressions"]:
            del term["matchExpressions"]
    if required is not None:
        required["nodeSelectorTerms"] = [term for term in required.get("nodeSelectorTerms") or []
                                         if term]
        if not required["nodeSelectorTerms"]:
            del affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    for key in [key for key, value in affinity.items() if not value]:
        del affinity[key]
    if "affinity" in spec and not affinity:
        del spec["affinity"]


def platform_image(image: str, site: Site) -> str:
    """The overlay's ``images`` transformer: upstream's platform images -> site repository:tag."""
    name = naming.parse(image).name
    for upstream in PLATFORM_IMAGES:
        if name == naming.parse(upstream).name:
            basename = upstream.rsplit("/", 1)[1]
            return f"{site.cube.image_repository.rstrip('/')}/{basename}:{site.cube.image_tag}"
    return image


def _from_site(variable: dict, settings: dict[str, str]) -> None:
    """kustomize's ``$(STAGE)`` var resolved; password-bearing keys from the Secret."""
    if variable.get("value") == "$(STAGE)":
        variable["value"] = settings["STAGE"]
    reference = (variable.get("valueFrom") or {}).get("configMapKeyRef")
    if reference and reference.get("name") == DEPLOY_CONFIG and reference.get("key") in SECRET_KEYS:
        variable["valueFrom"] = {"secretKeyRef": {"name": CREDENTIALS_SECRET,
                                                  "key": reference["key"]}}


def deploy_config(site: Site) -> dict[str, str]:
    """The overlay's deploy-config literals, with the site's values and no password."""
    redis_host, redis_port = redis_address(site)
    return {
        "STAGE": "prod",
        "REDIS_HOST": redis_host,
        "REDIS_PORT": str(redis_port),
        "MYSQL_SERVICE": mysql_url(site, with_credentials=False),
        "ENVIRONMENT": cube_config.environment(site),
    }


def redis_address(site: Site) -> tuple[str, int]:
    if site.redis.mode == "in-cluster":
        return "redis-master.infra", 6379
    return site.redis.host or "", site.redis.port


def mysql_url(site: Site, *, with_credentials: bool) -> str:
    """The platform's SQLAlchemy URL: mysql+pymysql://USER:PASSWORD@HOST:PORT/kubeflow?charset=utf8."""
    mysql = site.mysql
    host, port = ("mysql-service.infra", 3306) if mysql.mode == "in-cluster" else (mysql.host, mysql.port)
    credentials = ""
    if with_credentials:
        user, password = ((mysql.app_user.name, mysql.app_user.password) if mysql.app_user
                          else (mysql.user, mysql.password))
        # Quoted: a password with @ / : or % must not break the URL (SQLAlchemy unquotes).
        credentials = f"{quote(user, safe='')}:{quote(password.reveal(), safe='')}@"
    return f"mysql+pymysql://{credentials}{host}:{port}/{PLATFORM_DATABASE}?charset=utf8"
