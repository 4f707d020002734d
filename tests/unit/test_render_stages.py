"""Rendering of the stages whose manifests cubeinstall writes: dashboard, mysql, redis,
efk, the prometheus stage's own objects, cube.

Golden files (tests/golden/<stage>.yaml; refresh with CUBEINSTALL_UPDATE_GOLDEN=1
and review the diff), passwords only inside Secrets, placement, runtime log
paths, the platform's config files, and which stages a domain change touches.
Rendering the whole site reads upstream manifests: ``images_upstream_cache``
(tests/servers/registry.py) fills a cache from ../shared/upstream.
"""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import quote

import pytest
import yaml

from cubeinstall.core.errors import ConfigError
from cubeinstall.render import finalize
from cubeinstall.site.loader import load_site
from cubeinstall.stages import (
    cube,
    dashboard,
    efk,
    gateway,
    mysql,
    prometheus_objects,
    redis,
)
from cubeinstall.stages.rendered import all_objects
from cubeinstall.stages.workloads import CONFIG_DIGEST_ANNOTATION
from tests.helpers import (
    CUBE_INSTALL,
    EXAMPLE_SITE,
    assert_golden,
    example_site_data,
    write_site,
)

MODULES = {"dashboard": dashboard, "mysql": mysql, "redis": redis, "efk": efk,
           "prometheus-objects": prometheus_objects, "cube": cube}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
UPSTREAM_CONFIG = CUBE_INSTALL / "cube" / "overlays" / "config"
# Per-node agents: they run wherever logs and metrics are produced, not on the stage's nodes.
EVERY_NODE = {("efk", "filebeat"), ("prometheus-objects", "node-exporter")}
PLACEMENT = {"dashboard": "kubeflow", "mysql": "mysql", "redis": "redis", "efk": "logging",
             "prometheus-objects": "monitoring", "cube": "kubeflow-dashboard"}


def render(site, name: str) -> list[dict]:
    return finalize(site, MODULES[name].render(site))


def site_with(tmp_path, **changes):
    data = example_site_data()
    for key, value in changes.items():
        data[key] = value
    return load_site(write_site(tmp_path, data))


@pytest.fixture(scope="module")
def example():
    return load_site(EXAMPLE_SITE)


@pytest.fixture(scope="module")
def rendered(example):
    return {name: render(example, name) for name in MODULES}


def pod_specs(objects: list[dict]):
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield obj, obj["spec"]["template"]["spec"]


def containers(objects: list[dict]):
    for obj, spec in pod_specs(objects):
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield obj, container


# -- golden files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODULES))
def test_golden(name, rendered):
    assert_golden(name, [without_upstream_copies(o) for o in rendered[name]])


# ConfigMaps holding whole upstream files: the grafana dashboards, and the platform's
# config.py / entrypoint.sh / project.py (their text is compared with the pinned files by
# test_grafana_dashboards_are_the_pinned_files and test_cube_parity.py).
UPSTREAM_FILE_CONFIGMAPS = ("all-grafana-dashboards", "kubeflow-dashboard-config")


def without_upstream_copies(obj: dict) -> dict:
    """Those ConfigMaps with each file's sha256 in place of its text: golden files hold no
    copies of upstream files."""
    if obj["kind"] != "ConfigMap" or obj["metadata"]["name"] not in UPSTREAM_FILE_CONFIGMAPS:
        return obj
    digests = {key: "sha256:" + hashlib.sha256(text.encode()).hexdigest()
               for key, text in obj["data"].items()}
    return {**obj, "data": digests}


# -- passwords only in Secrets -----------------------------------------------------------------

TRICKY = "p@ss:w/rd %2F \"q\" 'x' é"


def test_every_secret_value_is_only_inside_secret_objects(tmp_path, images_upstream_cache):
    (tmp_path / "pw").mkdir()
    values = {name: f"{name}-{TRICKY}" for name in
              ("registry", "mysql", "redis", "ceph", "grafana", "app")}
    for name, value in values.items():
        (tmp_path / "pw" / name).write_text(value)
    data = example_site_data()
    data["registry"]["password"] = {"file": "pw/registry"}
    data["storage"]["secret"] = {"file": "pw/ceph"}
    data["mysql"] = {"mode": "in-cluster", "password": {"file": "pw/mysql"},
                     "app_user": {"name": "cube", "password": {"file": "pw/app"}}}
    data["redis"] = {"password": {"file": "pw/redis"}}
    data["monitoring"] = {"grafana_admin_password": {"file": "pw/grafana"}}
    site = load_site(write_site(tmp_path, data))
    stages = {**all_objects(site), "prometheus-objects": render(site, "prometheus-objects")}

    # As written, URL-quoted (the MySQL URL), JSON-escaped (.dockerconfigjson), base64.
    forms = {value: {value, quote(value, safe=""), json.dumps(value)[1:-1],
                     base64.b64encode(value.encode()).decode()} for value in values.values()}
    in_secrets = set()
    for stage, objects in stages.items():
        for obj in objects:
            text = json.dumps(obj, ensure_ascii=False)
            found = {value for value, variants in forms.items()
                     if any(variant in text for variant in variants)}
            if obj["kind"] == "Secret":
                decoded = " ".join(base64.b64decode(v).decode() for v in obj.get("data", {}).values())
                in_secrets |= {value for value, variants in forms.items()
                               if any(variant in decoded for variant in variants)}
                continue
            assert not found, f"{stage}: {obj['kind']} {obj['metadata']['name']} holds a secret"
    # Every secret the cluster stages hand to pods is really there, in a Secret.
    assert in_secrets == {values[name] for name in ("registry", "mysql", "redis", "grafana", "app")}


def test_platform_reads_full_mysql_url_from_the_secret(example, rendered):
    objects = rendered["cube"]
    secret = next(o for o in objects if o["kind"] == "Secret")
    url = base64.b64decode(secret["data"]["MYSQL_SERVICE"]).decode()
    password = quote(example.mysql.password.reveal(), safe="")
    assert url == f"mysql+pymysql://root:{password}@mysql-service.infra:3306/kubeflow?charset=utf8"
    config = next(o for o in objects if o["metadata"]["name"] == "deploy-config")
    assert config["data"]["MYSQL_SERVICE"] == "mysql+pymysql://mysql-service.infra:3306/kubeflow?charset=utf8"
    # upstream's deploy-config literals (overlays/kustomization.yml) minus the password
    assert set(config["data"]) == {"STAGE", "REDIS_HOST", "REDIS_PORT", "MYSQL_SERVICE",
                                   "ENVIRONMENT"}
    assert config["data"]["ENVIRONMENT"] == example.platform_cluster.name
    for _, container in containers(objects):
        if container["image"].endswith(f"kubeflow-dashboard:{example.cube.image_tag}"):
            sources = {e["name"]: e.get("valueFrom") for e in container["env"]}
            assert sources["MYSQL_SERVICE"]["secretKeyRef"]["name"] == cube.CREDENTIALS_SECRET
            assert sources["REDIS_PASSWORD"]["secretKeyRef"]["name"] == cube.CREDENTIALS_SECRET
            assert sources["ENVIRONMENT"]["configMapKeyRef"]["name"] == "deploy-config"


def test_external_mysql_and_redis_addresses(tmp_path):
    site = site_with(tmp_path, mysql={"mode": "external", "host": "db.example.com", "port": 3307,
                                      "password": "mysql-pw-1"},
                     redis={"mode": "external", "host": "cache.example.com", "port": 6380,
                            "password": "redis-pw-2"})
    config = cube.deploy_config(site)
    assert config["MYSQL_SERVICE"] == "mysql+pymysql://db.example.com:3307/kubeflow?charset=utf8"
    assert (config["REDIS_HOST"], config["REDIS_PORT"]) == ("cache.example.com", "6380")


def test_redis_password_reaches_redis_only_through_the_secret_file(example, rendered):
    objects = rendered["redis"]
    secret = next(o for o in objects if o["kind"] == "Secret")
    auth = base64.b64decode(secret["data"]["auth.conf"]).decode()
    assert auth == f"requirepass {redis.config_string(example.redis.password.reveal())}\n"
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["redis.conf"]
    assert "include /etc/redis/secret/auth.conf" in config and "requirepass" not in config.replace(
        "# requirepass", "")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "redis-server", "/etc/redis/redis.conf"]


@pytest.mark.parametrize("value, expected", [
    ("plain", '"plain"'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("sp ace", '"sp ace"'),
    ("é\n", '"\\xc3\\xa9\\x0a"'),
])
def test_redis_config_string(value, expected):
    assert redis.config_string(value) == expected


# -- placement, images, resources ---------------------------------------------------------------


def test_workloads_select_their_stage_nodes(rendered):
    for name, objects in rendered.items():
        for obj, spec in pod_specs(objects):
            if (name, obj["metadata"]["name"]) in EVERY_NODE:
                assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
                assert spec["tolerations"] == [{"operator": "Exists"}]
            else:
                assert spec["nodeSelector"] == {PLACEMENT[name]: "true"}, obj["metadata"]["name"]
            assert spec["imagePullSecrets"] == [{"name": "hubsecret"}]
    operator_made = [o for o in rendered["prometheus-objects"]
                     if o["kind"] in ("Prometheus", "Alertmanager")]
    assert [o["spec"]["nodeSelector"] for o in operator_made] == [{"monitoring": "true"}] * 2


def test_placement_override_moves_the_workloads(tmp_path):
    data = example_site_data()
    data["nodes"][1]["labels"] = {"db": "true"}
    data["components"]["mysql"] = {"placement": "db"}
    site = load_site(write_site(tmp_path, data))
    [(_, spec)] = pod_specs(render(site, "mysql"))
    assert spec["nodeSelector"] == {"db": "true"}


def test_images_pinned_and_resources_requested(rendered):
    for name, objects in rendered.items():
        for obj, container in containers(objects):
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
            assert container["resources"]["requests"], f"{name} {container['name']}"
    crs = [o for o in rendered["prometheus-objects"] if o["kind"] in ("Prometheus", "Alertmanager")]
    assert all(":v" in o["spec"]["image"] and o["spec"]["resources"]["requests"] for o in crs)


def test_probes_on_every_serving_container(rendered):
    for name, objects in rendered.items():
        for obj, container in containers(objects):
            if container.get("ports"):
                assert "readinessProbe" in container or "livenessProbe" in container, \
                    f"{name} {container['name']}"


def workloads_by_name(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in WORKLOADS}


def test_config_changes_roll_the_pods(tmp_path, example):
    mysql_pods = workloads_by_name(render(example, "mysql"))["mysql"]["spec"]["template"]
    assert len(mysql_pods["metadata"]["annotations"][CONFIG_DIGEST_ANNOTATION]) == 16
    old = workloads_by_name(render(example, "cube"))
    after = workloads_by_name(render(site_with(tmp_path, domain="other.example.com"), "cube"))
    for name in ("kubeflow-dashboard", "kubeflow-watch"):
        annotations = [o["spec"]["template"]["metadata"]["annotations"][CONFIG_DIGEST_ANNOTATION]
                       for o in (old[name], after[name])]
        assert annotations[0] != annotations[1], name
    # The frontend reads no ConfigMap: it does not restart for a new domain.
    assert old["kubeflow-dashboard-frontend"] == after["kubeflow-dashboard-frontend"]


# -- efk ---------------------------------------------------------------------------------------


def filebeat(objects):
    config = next(o for o in objects if o["metadata"]["name"] == "filebeat-config")
    daemonset = next(o for o in objects if o["kind"] == "DaemonSet")
    spec = daemonset["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    host_paths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    return yaml.safe_load(config["data"]["filebeat.yml"]), mounts, host_paths


def test_filebeat_reads_docker_container_logs(rendered):
    config, mounts, host_paths = filebeat(rendered["efk"])
    container_input = config["filebeat.inputs"][0]
    assert container_input["paths"] == ["/var/lib/docker/containers/*/*.log"]
    matcher = container_input["processors"][0]["add_kubernetes_metadata"]["matchers"][0]
    assert matcher["logs_path"]["logs_path"] == "/var/lib/docker/containers/"
    assert {"/var/log", "/var/lib/docker/containers"} <= mounts
    assert {"/var/log", "/var/lib/docker/containers"} <= host_paths
    assert "/var/log/*.log" in config["filebeat.inputs"][1]["paths"]


def test_filebeat_reads_containerd_pod_logs(tmp_path):
    site = site_with(tmp_path, runtime="containerd")
    config, mounts, host_paths = filebeat(render(site, "efk"))
    container_input = config["filebeat.inputs"][0]
    assert container_input["paths"] == ["/var/log/containers/*.log"]
    matcher = container_input["processors"][0]["add_kubernetes_metadata"]["matchers"][0]
    assert matcher["logs_path"]["logs_path"] == "/var/log/containers/"
    # /var/log/containers links into /var/log/pods: one /var/log mount holds both.
    assert "/var/log" in mounts and "/var/lib/docker/containers" not in mounts
    assert "/var/lib/docker/containers" not in host_paths


def test_filebeat_rbac_is_v1_and_read_only(rendered):
    rbac = [o for o in rendered["efk"] if o["apiVersion"].startswith("rbac.")]
    assert {o["apiVersion"] for o in rbac} == {"rbac.authorization.k8s.io/v1"}
    role = next(o for o in rbac if o["kind"] == "ClusterRole")
    assert {verb for rule in role["rules"] for verb in rule["verbs"]} == {"get", "list", "watch"}


def test_kibana_base_path_agrees_with_the_gateway_route(example, rendered):
    route = next(r for r in gateway.ROUTES if r.name == "kibana")
    env = {e["name"]: e["value"] for _, c in containers(rendered["efk"]) if c["name"] == "kibana"
           for e in c["env"]}
    assert route.prefix.rstrip("/") == env["SERVER_BASEPATH"] == "/kibana"
    # The gateway strips the prefix exactly when Kibana must not expect it.
    assert (route.rewrite == "/") == (env["SERVER_REWRITEBASEPATH"] == "false")
    kibana = next(o for o in rendered["efk"] if o["kind"] == "Service" and o["metadata"]["name"] == "kibana")
    assert (kibana["metadata"]["namespace"], kibana["spec"]["ports"][0]["port"], route.port) == (
        "logging", 5601, 5601)


def test_elasticsearch_heap_sets_memory(tmp_path):
    site = site_with(tmp_path, logging={"elasticsearch_heap": "3g"})
    statefulset = next(o for o in render(site, "efk") if o["kind"] == "StatefulSet")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ES_JAVA_OPTS"] == "-Xms3g -Xmx3g"
    assert container["resources"]["limits"]["memory"] == "6Gi"


# -- dashboard and gateway agree ------------------------------------------------------------------


def test_dashboard_services_match_the_gateway_routes(rendered, example):
    services = {(o["metadata"]["name"], o["metadata"]["namespace"], o["spec"]["ports"][0]["port"])
                for o in rendered["dashboard"] if o["kind"] == "Service"}
    routed = [route["destination"] for vs in gateway.render(example)
              if vs["kind"] == "VirtualService" and vs["metadata"]["namespace"] == "kube-system"
              for http in vs["spec"]["http"] for route in http["route"]]
    assert len(routed) == 2
    for destination in routed:
        name, namespace = destination["host"].split(".")[:2]
        assert (name, namespace, destination["port"]["number"]) in services


def dashboard_args(objects):
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]["args"]
            for o in objects if o["kind"] == "Deployment" and "args" in
            o["spec"]["template"]["spec"]["containers"][0]}


@pytest.mark.parametrize("skip_login, open_dashboards", [
    ("none", set()),
    ("user", {"kubernetes-dashboard-user1"}),
    ("all", {"kubernetes-dashboard-user1", "kubernetes-dashboard-cluster"}),
])
def test_dashboard_skip_login(tmp_path, skip_login, open_dashboards):
    site = site_with(tmp_path, dashboard={"skip_login": skip_login})
    args = dashboard_args(render(site, "dashboard"))
    assert {name for name, a in args.items() if "--enable-skip-login" in a} == open_dashboards
    assert all("--insecure-port=9090" in a and "--enable-insecure-login" in a for a in args.values())


def test_user_dashboard_is_bound_only_in_its_namespaces(rendered):
    objects = rendered["dashboard"]
    bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
                and any(s["name"] == "kubernetes-dashboard-user1" for s in o["subjects"])]
    assert {(o["kind"], o["metadata"].get("namespace"), o["roleRef"]["name"]) for o in bindings} == {
        ("RoleBinding", ns, f"kubernetes-dashboard-{ns}")
        for ns in ("pipeline", "automl", "service", "jupyter", "aihub")} | {
        ("RoleBinding", "kube-system", "kubernetes-dashboard-minimal"),
        ("ClusterRoleBinding", None, "kubernetes-dashboard-minimal")}
    minimal = next(o for o in objects if o["kind"] == "ClusterRole"
                   and o["metadata"]["name"] == "kubernetes-dashboard-minimal")
    assert {verb for rule in minimal["rules"] for verb in rule["verbs"]} == {"get", "list", "watch"}
    admin = next(o for o in objects if o["metadata"]["name"] == "kubernetes-dashboard-cluster"
                 and o["kind"] == "ClusterRoleBinding")
    assert admin["roleRef"]["name"] == "kubernetes-dashboard-cluster"


def test_dashboard_state_objects_carry_no_data(rendered):
    """An apply must never reset the keys the dashboards write at first start."""
    state = [o for o in rendered["dashboard"] if o["kind"] in ("Secret", "ConfigMap")]
    assert {o["metadata"]["name"] for o in state} == {
        "kubernetes-dashboard-certs", "kubernetes-dashboard-csrf",
        "kubernetes-dashboard-key-holder", "kubernetes-dashboard-settings"}
    assert all("data" not in o and "stringData" not in o for o in state)


# -- grafana ---------------------------------------------------------------------------------------


def grafana_ini(objects) -> str:
    return next(o for o in objects if o["metadata"]["name"] == "grafana-config")["data"]["grafana.ini"]


def test_grafana_without_password_has_no_login(rendered):
    ini = grafana_ini(rendered["prometheus-objects"])
    assert "disable_login_form = true" in ini and "disable_initial_admin_creation = true" in ini
    secrets = [o["metadata"]["name"] for o in rendered["prometheus-objects"] if o["kind"] == "Secret"]
    assert secrets == ["prometheus-config"]  # scrape jobs only, no Grafana login
    assert "serve_from_sub_path = true" in ini and "/grafana/" in ini


def test_grafana_with_password_gets_it_from_a_secret(tmp_path):
    site = site_with(tmp_path, monitoring={"grafana_admin_password": "grafana-pw"})
    objects = render(site, "prometheus-objects")
    assert "disable_login_form = false" in grafana_ini(objects)
    [(_, container)] = [(o, c) for o, c in containers(objects) if c["name"] == "grafana"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert env == {"GF_SECURITY_ADMIN_USER": "grafana-admin", "GF_SECURITY_ADMIN_PASSWORD": "grafana-admin"}


def test_prometheus_data_claim_is_the_one_its_statefulset_uses(rendered):
    objects = rendered["prometheus-objects"]
    prometheus = next(o for o in objects if o["kind"] == "Prometheus")
    template = prometheus["spec"]["storage"]["volumeClaimTemplate"]["spec"]
    claim = next(o for o in objects if o["kind"] == "PersistentVolumeClaim"
                 and o["metadata"]["name"] == prometheus_objects.PROMETHEUS_CLAIM)
    pv = next(o for o in objects if o["metadata"]["name"] == template["volumeName"])
    assert claim["spec"]["volumeName"] == pv["metadata"]["name"]
    assert claim["spec"]["resources"] == template["resources"]
    assert pv["spec"]["hostPath"]["path"] == "/data/k8s/monitoring/prometheus"
    # <volumeClaimTemplate name>-<StatefulSet name>-0, as the operator names them.
    assert prometheus_objects.PROMETHEUS_CLAIM == f"prometheus-{prometheus['metadata']['name']}-db-prometheus-{prometheus['metadata']['name']}-0"


# -- mysql -------------------------------------------------------------------------------------


def test_mysql_volume_size_from_site(tmp_path):
    site = site_with(tmp_path, mysql={"password": "mysql-pw-1", "storage_size": "40Gi"})
    objects = render(site, "mysql")
    pv = next(o for o in objects if o["kind"] == "PersistentVolume")
    assert (pv["metadata"]["name"], pv["spec"]["capacity"]["storage"]) == ("infra-mysql-pv", "40Gi")
    assert pv["spec"]["claimRef"]["name"] == "infra-mysql-pvc"
    assert pv["spec"]["hostPath"]["path"] == "/data/k8s/infra/mysql"
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_mysql_in_cluster_is_root(tmp_path):
    site = site_with(tmp_path, mysql={"password": "mysql-pw-1", "user": "admin"})
    with pytest.raises(ConfigError, match="mysql.user"):
        render(site, "mysql")


# -- cube config files --------------------------------------------------------------------------


def test_cube_mounts_upstream_files_without_site_files(rendered):
    objects = rendered["cube"]
    config = next(o for o in objects if o["metadata"]["name"] == "kubeflow-dashboard-config")
    assert set(config["data"]) == {"config.py", "entrypoint.sh", "project.py"}
    for key in ("entrypoint.sh", "project.py"):
        assert config["data"][key] == (UPSTREAM_CONFIG / key).read_text(encoding="utf-8")


def test_cube_mounts_the_files_the_site_gives(tmp_path):
    (tmp_path / "config.py").write_text("SQLALCHEMY_POOL_SIZE = 10\n")
    (tmp_path / "entrypoint.sh").write_text("#!/bin/bash\nexec gunicorn myapp:app\n")
    site = site_with(tmp_path, cube={"config_py": "config.py", "entrypoint_sh": "entrypoint.sh"})
    objects = render(site, "cube")
    config = next(o for o in objects if o["metadata"]["name"] == "kubeflow-dashboard-config")
    assert config["data"] == {
        "config.py": "SQLALCHEMY_POOL_SIZE = 10\n",
        "entrypoint.sh": "#!/bin/bash\nexec gunicorn myapp:app\n",
        "project.py": (UPSTREAM_CONFIG / "project.py").read_text(encoding="utf-8")}
    backend = workloads_by_name(objects)["kubeflow-dashboard"]
    mounts = {m["mountPath"]: m for m in backend["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/home/myapp/myapp/config.py"]["subPath"] == "config.py"
    assert mounts["/entrypoint.sh"]["subPath"] == "entrypoint.sh"
    assert mounts["/home/myapp/myapp/project.py"]["subPath"] == "project.py"


def test_cube_unreadable_config_file_names_the_field(tmp_path):
    site = site_with(tmp_path, cube={"project_py": "missing/project.py"})
    with pytest.raises(ConfigError) as info:
        render(site, "cube")
    assert "cube.project_py" in info.value.message and "missing/project.py" in info.value.message


def test_cube_images_follow_the_site(tmp_path):
    site = site_with(tmp_path, cube={"image_repository": "harbor.example.com/cube", "image_tag": "2026.04.01"})
    images = {c["image"] for _, c in containers(cube.render(site))}
    assert images == {"harbor.example.com/cube/kubeflow-dashboard:2026.04.01",
                      "harbor.example.com/cube/kubeflow-dashboard-frontend:2026.04.01"}


# -- the domain reaches only the gateway and the platform ------------------------------------------


def test_domain_change_touches_only_gateway_and_cube(tmp_path, images_upstream_cache):
    renders = []
    for name, domain in (("a", "cube.example.com"), ("b", "cube.other.example.org")):
        (tmp_path / name).mkdir()
        site = site_with(tmp_path / name, domain=domain)
        # prometheus-objects joins all_objects through stages/prometheus.py; listed here
        # on its own so that it is compared whether or not that stage exists yet.
        renders.append({**all_objects(site), "prometheus-objects": render(site, "prometheus-objects")})
    first, second = renders
    assert set(first) == set(second)
    assert set(MODULES) | {"gateway", "namespaces", "pv-pvc"} <= set(first)
    changed = {stage for stage in first if first[stage] != second[stage]}
    assert changed == {"gateway", "cube"}
    cube_changed = {o["metadata"]["name"] for o, p in zip(first["cube"], second["cube"]) if o != p}
    assert cube_changed == {"kubeflow-dashboard-config", *cube.BACKEND_DEPLOYMENTS}
