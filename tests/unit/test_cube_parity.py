"""The cube stage against cube-studio's own install files (../shared/upstream, v2026.03.01).

What the platform's images read -- config.py and the environment it reads, the files
mounted and where, commands, service accounts, ports, probes, the nginx proxy target,
the kubeconfig files -- is compared with upstream's install/kubernetes/cube read
straight from the shared copy (never through cubeinstall's cache or code). Every
difference allowed here is one of the deliberate differences the stage documents.
"""

from __future__ import annotations

import ast
import base64
import copy
import sys
import types

import pytest
import yaml

from cubeinstall.core.errors import CubeError
from cubeinstall.render import finalize, naming
from cubeinstall.site import platform
from cubeinstall.site.loader import load_site
from cubeinstall.stages import cube, cube_config, kubeconfig
from tests.helpers import (
    CUBE_INSTALL,
    EXAMPLE_SITE,
    REPO,
    example_site_data,
    other_cluster,
    write_site,
)

UPSTREAM_CONFIG_PY = CUBE_INSTALL / "cube" / "overlays" / "config" / "config.py"
BASE = CUBE_INSTALL / "cube" / "base"
DEPLOYMENTS = (*cube.BACKEND_DEPLOYMENTS, cube.FRONTEND)
REPLACED = ("SERVICE_EXTERNAL_IP", "CLUSTERS")
IMAGE_NAMES = tuple(cube_config.IMAGE_SETTINGS)
# config.py:41 SECRET_KEY has "\e": upstream's, compiled here on purpose
pytestmark = pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")


@pytest.fixture(scope="module")
def example():
    return load_site(EXAMPLE_SITE)


@pytest.fixture(scope="module")
def objects(example):
    return finalize(example, cube.render(example))


def named(objects, kind, name):
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def config_py(objects) -> str:
    return named(objects, "ConfigMap", "kubeflow-dashboard-config")["data"]["config.py"]


def upstream_objects() -> dict[tuple[str, str], dict]:
    result = {}
    for path in sorted(BASE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                result[(doc["kind"], doc["metadata"]["name"])] = doc
    return result


# -- config.py ----------------------------------------------------------------------------------


def value_spans(source: str, names) -> list[tuple[int, int]]:
    """Byte ranges of the values of the top-level assignments of ``names`` (test's own ast walk)."""
    data = source.encode()
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets][0] in names:
            value = node.value
            spans.append((starts[value.lineno - 1] + value.col_offset,
                          starts[value.end_lineno - 1] + value.end_col_offset))
    return sorted(spans)


def outside(source: str, names) -> list[bytes]:
    """The file's bytes between the values of ``names``: what must stay upstream's."""
    data, pieces, at = source.encode(), [], 0
    for start, end in value_spans(source, names):
        pieces.append(data[at:start])
        at = end
    return pieces + [data[at:]]


def test_config_py_compiles(objects):
    compile(config_py(objects), "config.py", "exec")


def test_config_py_is_upstream_outside_the_replaced_assignments(objects):
    upstream = UPSTREAM_CONFIG_PY.read_text(encoding="utf-8")
    rendered = config_py(objects)
    assert rendered != upstream
    names = REPLACED + IMAGE_NAMES  # the example mirrors into its registry
    assert len(value_spans(upstream, names)) == len(names)
    assert outside(rendered, names) == outside(upstream, names)


def test_config_py_without_registry_keeps_upstream_images(tmp_path):
    data = example_site_data()
    del data["registry"]
    site = load_site(write_site(tmp_path, data))
    rendered = cube_config.files(site)["config.py"]
    assert outside(rendered, REPLACED) == outside(UPSTREAM_CONFIG_PY.read_text(encoding="utf-8"),
                                                 REPLACED)


class _Anything(types.ModuleType):
    """Stands for the platform's imports (flask_appbuilder, celery, myapp...): any name, callable."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _anything

    def __call__(self, *args, **kwargs):
        return self


_anything = _Anything("anything")


def pod_environment(objects, deployment: str) -> dict[str, str]:
    """The environment variables the Deployment's container gets, resolved from the objects."""
    pod = named(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    result = {}
    for variable in pod["containers"][0].get("env") or []:
        source = variable.get("valueFrom") or {}
        if "value" in variable:
            result[variable["name"]] = variable["value"]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            result[variable["name"]] = named(objects, "ConfigMap", ref["name"])["data"][ref["key"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            encoded = named(objects, "Secret", ref["name"])["data"][ref["key"]]
            result[variable["name"]] = base64.b64decode(encoded).decode()
    return result


def run_config_py(text: str, environment: dict[str, str], monkeypatch) -> dict:
    """Execute the whole config.py as the platform imports it, with its imports stubbed."""
    for module in ("imp", "dateutil", "flask_appbuilder", "flask_appbuilder.security",
                   "flask_appbuilder.security.manager", "myapp", "myapp.stats_logger",
                   "celery", "celery.schedules"):
        monkeypatch.setitem(sys.modules, module, _Anything(module))
    monkeypatch.delitem(sys.modules, "myapp_config", raising=False)
    for name in ("ENVIRONMENT", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "MYSQL_SERVICE",
                 "MYAPP_CONFIG_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    namespace = {"__name__": "myapp.config", "__file__": "/home/myapp/myapp/config.py"}
    exec(compile(text, "config.py", "exec"), namespace)  # noqa: S102 - the file under test
    return namespace


@pytest.mark.parametrize("deployment", cube.BACKEND_DEPLOYMENTS)
def test_config_py_runs_with_each_pods_environment(objects, example, deployment, monkeypatch):
    config = run_config_py(config_py(objects), pod_environment(objects, deployment), monkeypatch)
    assert config["ENVIRONMENT"] == "main"
    assert config["ENVIRONMENT"] in config["CLUSTERS"]
    assert config["CLUSTERS"] == {"main": {
        "NAME": "main",
        "KUBECONFIG": "/home/myapp/kubeconfig/main-kubeconfig",
        "SERVICE_DOMAIN": "service.cube.example.com",
        "HOST": "10.0.0.11|cube.example.com",
    }}
    assert config["HOST"] == "10.0.0.11|cube.example.com"
    assert config["SERVICE_EXTERNAL_IP"] == ["10.0.0.11"]
    # database and broker: from the env the pod gets (the Secret and deploy-config)
    assert config["SQLALCHEMY_DATABASE_URI"] == cube.mysql_url(example, with_credentials=True)
    assert config["REDIS_PASSWORD"] == example.redis.password.reveal()
    assert (config["REDIS_HOST"], config["REDIS_PORT"]) == ("redis-master.infra", "6379")
    assert config["CeleryConfig"].broker_url.startswith("redis://:")


def test_config_py_with_upstream_defaults_would_fail(monkeypatch):
    """The check above can fail: upstream's own file with ENVIRONMENT=main raises KeyError."""
    with pytest.raises(KeyError, match="main"):
        run_config_py(UPSTREAM_CONFIG_PY.read_text(encoding="utf-8"), {"ENVIRONMENT": "main"},
                      monkeypatch)


def test_every_site_cluster_is_in_clusters(tmp_path):
    data = example_site_data()
    data["clusters"].append(other_cluster("gpu-east"))
    data["cube"]["environment"] = "MAIN"  # upper case is accepted: config.py lower-cases it
    site = load_site(write_site(tmp_path, data))
    clusters = ast.literal_eval(_value_text(cube_config.files(site)["config.py"], "CLUSTERS"))
    assert list(clusters) == ["main", "gpu-east"]
    # each cluster's HOST and SERVICE_DOMAIN are its own gateway's (the platform starts a
    # notebook's VirtualService on the gateway of the cluster it runs in)
    assert clusters["main"]["HOST"] == "10.0.0.11|cube.example.com"
    assert clusters["main"]["SERVICE_DOMAIN"] == "service.cube.example.com"
    assert clusters["gpu-east"] == {"NAME": "gpu-east",
                                    "KUBECONFIG": "/home/myapp/kubeconfig/gpu-east-kubeconfig",
                                    "SERVICE_DOMAIN": "service.gpu-east.cube.example.com",
                                    "HOST": "10.0.1.11|gpu-east.cube.example.com"}
    assert cube.deploy_config(site)["ENVIRONMENT"] == "main"
    # a NodePort gateway has no address of its own: HOST is the cluster's domain
    data["clusters"][1]["gateway"] = {"expose": "NodePort"}
    nodeport = load_site(write_site(tmp_path, data))
    assert cube_config.clusters(nodeport)["gpu-east"]["HOST"] == "gpu-east.cube.example.com"
    # each KUBECONFIG is a file of the Secret mounted at /home/myapp/kubeconfig
    secret = kubeconfig.render(site)[0]
    for entry in clusters.values():
        directory, _, file = entry["KUBECONFIG"].rpartition("/")
        assert directory == platform.KUBECONFIG_DIR and file in secret["data"]
    assert secret["data"]["main-kubeconfig"] == ""  # the platform's own: in-cluster SA


def _value_text(source: str, name: str) -> str:
    [(start, end)] = value_spans(source, (name,))
    return source.encode()[start:end].decode()


def test_image_settings_point_at_the_site_registry(objects, example):
    text = config_py(objects)
    values = {name: ast.literal_eval(_value_text(text, name)) for name in IMAGE_NAMES}
    upstream = UPSTREAM_CONFIG_PY.read_text(encoding="utf-8")
    before = {name: ast.literal_eval(_value_text(upstream, name)) for name in IMAGE_NAMES}
    registry = example.registry
    for name in ("USER_IMAGE", "NNI_IMAGES", "DOCKER_IMAGES", "NERDCTL_IMAGES", "WAIT_POD_IMAGES"):
        assert values[name] == naming.target_name(before[name], registry), name
    assert [pair[0] for pair in values["NOTEBOOK_IMAGES"]] == [
        naming.target_name(pair[0], registry) for pair in before["NOTEBOOK_IMAGES"]]
    assert [pair[1:] for pair in values["NOTEBOOK_IMAGES"]] == [
        pair[1:] for pair in before["NOTEBOOK_IMAGES"]]
    assert values["INFERNENCE_IMAGES"] == {
        kind: [naming.target_name(image, registry) for image in images]
        for kind, images in before["INFERNENCE_IMAGES"].items()}
    # the platform writes REPOSITORY_ORG + "<name>:<tag>": the mirrored name of upstream's
    assert values["REPOSITORY_ORG"] + "notebook:jupyter-ubuntu22.04" == naming.target_name(
        before["REPOSITORY_ORG"] + "notebook:jupyter-ubuntu22.04", registry)
    assert values["PUSH_REPOSITORY_ORG"] == "harbor.example.com/cube-studio/"


@pytest.mark.parametrize("change", ["missing", "twice"])
def test_an_unexpected_config_py_fails_naming_the_pinned_version(example, change):
    upstream = UPSTREAM_CONFIG_PY.read_text(encoding="utf-8")
    line = "SERVICE_EXTERNAL_IP=[]"
    assert upstream.count(line) == 1
    modified = (upstream.replace(line, "# removed") if change == "missing"
                else upstream + "\nSERVICE_EXTERNAL_IP = ['1.2.3.4']\n")
    label = cube_config.upstream_label(example)
    with pytest.raises(CubeError) as info:
        cube_config.configured(example, modified, label)
    message = info.value.message
    assert "cube-studio v2026.03.01" in message and "SERVICE_EXTERNAL_IP" in message
    assert ("no top-level assignment" if change == "missing" else "assigned 2 times") in message


def test_the_sites_own_config_py_is_used_as_it_is(tmp_path):
    (tmp_path / "mine.py").write_text("CLUSTERS = {}\n")
    site = load_site(write_site(tmp_path, {**example_site_data(), "cube": {"config_py": "mine.py"}}))
    assert cube_config.files(site)["config.py"] == "CLUSTERS = {}\n"


# -- the Deployments against upstream's cube/base ---------------------------------------------------


def _source(volume: dict) -> dict:
    return {key: value for key, value in volume.items() if key != "name"}


def pod_facts(deployment: dict) -> dict:
    """What the platform's containers see: commands, env names and sources, mounts, SA, ports..."""
    pod = deployment["spec"]["template"]["spec"]
    facts = {
        "serviceAccountName": pod.get("serviceAccountName"),
        "volumes": {v["name"]: _source(v) for v in pod.get("volumes") or []},
        "containers": [],
    }
    for container in pod["containers"]:
        facts["containers"].append({
            key: copy.deepcopy(container.get(key))
            for key in ("name", "command", "args", "workingDir", "ports", "readinessProbe",
                        "livenessProbe", "startupProbe", "securityContext", "volumeMounts")
        } | {"env": [(e["name"], e.get("value"), e.get("valueFrom")) for e in container.get("env") or []]})
    return facts


def expected_facts(upstream: dict, name: str) -> dict:
    """Upstream's facts with the stage's deliberate differences (module doc of stages/cube.py)."""
    facts = pod_facts(upstream)
    volume = facts["volumes"].get(platform.KUBECONFIG_SECRET)
    if volume is not None:  # a Secret: it may hold credentials of other clusters
        facts["volumes"][platform.KUBECONFIG_SECRET] = {"secret": {"secretName": "kubernetes-config"}}
    for container in facts["containers"]:
        env = []
        for variable, value, source in container["env"]:
            if value == "$(STAGE)":  # kustomize's var, from deploy-config's STAGE literal
                value = "prod"
            ref = (source or {}).get("configMapKeyRef") or {}
            if ref.get("key") in ("MYSQL_SERVICE", "REDIS_PASSWORD"):  # passwords: the Secret
                source = {"secretKeyRef": {"name": "cube-credentials", "key": ref["key"]}}
            env.append((variable, value, source))
        container["env"] = env
        if name == cube.FRONTEND:  # Ready must mean nginx listens
            container["readinessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 10}
    return facts


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_equals_upstream_but_for_the_documented_differences(objects, name):
    upstream = upstream_objects()[("Deployment", name)]
    rendered = named(objects, "Deployment", name)
    assert pod_facts(rendered) == expected_facts(upstream, name)


def test_watch_runs_supervisord_as_upstream(objects):
    [container] = named(objects, "Deployment", "kubeflow-watch")["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "kubeflow-watch-workflow"
    assert container["command"] == ["supervisord", "-c", "/home/myapp/myapp/tools/supervisord.conf"]
    assert container["workingDir"] == "/home/myapp"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_placement_pull_policy_and_image(objects, example, name):
    pod = named(objects, "Deployment", name)["spec"]["template"]["spec"]
    assert "affinity" not in pod and pod["nodeSelector"] == {"kubeflow-dashboard": "true"}
    [container] = pod["containers"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    basename = "kubeflow-dashboard-frontend" if name == cube.FRONTEND else "kubeflow-dashboard"
    assert container["image"] == naming.target_name(
        f"ccr.ccs.tencentyun.com/cube-studio/{basename}:{example.cube.image_tag}", example.registry)
    assert pod["imagePullSecrets"] == [{"name": "hubsecret"}]


def test_every_referenced_config_key_exists(objects):
    """Each mounted ConfigMap/Secret key and each env reference is in a rendered object."""
    rendered_data = {(o["kind"], o["metadata"]["name"]): o.get("data") or {}
                     for o in objects if o["kind"] in ("ConfigMap", "Secret")}
    rendered_data[("Secret", platform.KUBECONFIG_SECRET)] = {"main-kubeconfig": ""}  # kubeconfig stage
    for name in DEPLOYMENTS:
        pod = named(objects, "Deployment", name)["spec"]["template"]["spec"]
        for volume in pod.get("volumes") or []:
            if "configMap" in volume:
                data = rendered_data[("ConfigMap", volume["configMap"]["name"])]
                assert {item["key"] for item in volume["configMap"].get("items") or []} <= set(data)
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in rendered_data
        for variable in pod["containers"][0].get("env") or []:
            source = variable.get("valueFrom") or {}
            for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if field in source:
                    ref = source[field]
                    assert ref["key"] in rendered_data[(kind, ref["name"])], (name, ref)


def test_upstream_services_rbac_and_nginx_config_are_rendered_as_they_are(objects):
    for (kind, name), upstream in upstream_objects().items():
        if kind == "Deployment":
            continue
        rendered = named(objects, kind, name)
        for field in ("spec", "data", "rules", "roleRef", "subjects"):
            assert rendered.get(field) == upstream.get(field), (kind, name, field)
        assert rendered["metadata"].get("namespace") == (None if kind.startswith("Cluster") else "infra")


def test_frontend_proxies_to_the_backend_service(objects):
    conf = named(objects, "ConfigMap", "nginx-configmap")["data"]["default.conf"]
    assert "proxy_pass http://kubeflow-dashboard.infra/;" in conf
    service = named(objects, "Service", "kubeflow-dashboard")
    assert service["metadata"]["namespace"] == "infra"
    assert [p["port"] for p in service["spec"]["ports"]] == [80]
    pod = named(objects, "Deployment", cube.FRONTEND)["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    mount = mounts["/etc/nginx/conf.d/default.conf"]
    assert mount["subPath"] == "default.conf"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "nginx-configmap"


def test_backend_pods_roll_when_config_py_changes(tmp_path, objects):
    site = load_site(write_site(tmp_path, {**example_site_data(),
                                           "gateway": {"expose": "externalIPs",
                                                       "addresses": ["10.0.0.12"]}}))
    moved = finalize(site, cube.render(site))
    digest = "cubeinstall.io/config-digest"
    for name in cube.BACKEND_DEPLOYMENTS:
        before, after = (named(o, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
                         [digest] for o in (objects, moved))
        assert before != after, name


def test_only_upstreams_placement_affinity_is_dropped():
    placement = {"key": "kubeflow-dashboard", "operator": "In", "values": ["true"]}
    zone = {"key": "zone", "operator": "In", "values": ["a"]}
    anti = {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "h"}]}
    spec = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [placement, zone]}]}}, "podAntiAffinity": anti}}
    cube._drop_placement_affinity(spec)
    assert spec == {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [zone]}]}}, "podAntiAffinity": anti}}
    only = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [placement]}]}}}}
    cube._drop_placement_affinity(only)
    assert only == {}


def test_every_image_config_py_offers_is_mirrored_or_said_why_not():
    """On a mirroring site the cube stage points config.py's image settings at the site
    registry, so the images stage must copy every image they name (or the shipped list
    says why not): otherwise notebooks and services fail with ImagePullBackOff."""
    import warnings

    from cubeinstall.images.inventory import runtime_images

    source = UPSTREAM_CONFIG_PY.read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # upstream's invalid escapes
        tree = ast.parse(source)
    settings = ("USER_IMAGE", "NOTEBOOK_IMAGES", "NNI_IMAGES", "INFERNENCE_IMAGES",
                "DOCKER_IMAGES", "NERDCTL_IMAGES", "WAIT_POD_IMAGES")
    offered = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) in settings:
            offered |= set(image_strings(ast.literal_eval(node.value)))
    assert len(offered) > 40
    mirrored = {image for group in runtime_images().values() for image in group}
    shipped = yaml.safe_load((REPO / "manifests" / "runtime-images.yaml").read_text())
    not_mirrored = set(shipped["not_mirrored"])
    assert not (mirrored & not_mirrored)
    assert sorted(offered - mirrored - not_mirrored) == []
    assert not_mirrored <= offered, "a reason for an image config.py no longer names"


def image_strings(value):
    if isinstance(value, str):
        if ":" in value and " " not in value and ("/" in value or value.startswith("docker:")):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from image_strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from image_strings(item)
