"""Parity with cube-studio v2026.03.01's own install: ingress, dashboards, namespaces and
their RBAC, the pipeline account, volumes (issue #14 items 4, 7, 8, 9).

The rendered example site is compared with upstream's files read straight from
../shared/upstream (not through cubeinstall's cache), so a difference in what the
platform's images and start.sh expect -- names, hosts, routes, rules, paths -- fails here
even though the test cluster's kwok nodes would never notice it.
"""

from __future__ import annotations

import ast
import re
import warnings

import pytest
import yaml

from cubeinstall.site import platform
from cubeinstall.site.loader import load_site
from cubeinstall.stages import gateway
from cubeinstall.stages.rendered import all_objects
from tests.helpers import EXAMPLE_SITE, SHARED, example_site_data, write_site

U = SHARED / "upstream/cube-studio/v2026.03.01/install/kubernetes"
ISTIO_CRDS = SHARED / "upstream/istio/1.30.3/manifests/charts/base/files/crd-all.gen.yaml"
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount")


def upstream(path: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((U / path).read_text()) if doc]


def ident(obj: dict) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def index(objects: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {ident(obj): obj for obj in objects}


def start_sh_lines() -> list[str]:
    text = (U / "start.sh").read_text()
    return [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]


def applied_by_start_sh(path: str) -> bool:
    return any(re.search(rf"kubectl (apply|create) -f {re.escape(path)}(\s|$)", line)
               for line in start_sh_lines())


@pytest.fixture(scope="module")
def example():
    return load_site(EXAMPLE_SITE)


@pytest.fixture(scope="module")
def rendered(example):
    return all_objects(example)


@pytest.fixture(scope="module")
def everything(rendered):
    return index([obj for objects in rendered.values() for obj in objects])


def site_with(tmp_path, **changes):
    data = example_site_data()
    data.update(changes)
    return load_site(write_site(tmp_path, data))


def assert_same_rbac(mine: dict, theirs: dict) -> None:
    name = " ".join(ident(theirs))
    for field in ("rules", "roleRef", "subjects"):
        assert mine.get(field) == theirs.get(field), f"{name}: {field}"
    labels = (mine["metadata"].get("labels") or {})
    assert (theirs["metadata"].get("labels") or {}).items() <= labels.items(), name


# -- Gateways and VirtualServices (gateway.yaml, virtual.yaml) ------------------------------------


def test_gateways_accept_any_host_as_upstream(rendered):
    """The ingress stage (every cluster) holds upstream's Gateways; the gateway stage
    (platform cluster) only the routes bound to them."""
    mine = index(rendered["ingress"])
    theirs = upstream("gateway.yaml")
    assert {ident(o) for o in theirs} == {ident(o) for o in mine.values() if o["kind"] == "Gateway"}
    assert not [o for o in rendered["gateway"] if o["kind"] == "Gateway"]
    for gw in theirs:
        spec = mine[ident(gw)]["spec"]
        assert spec["selector"] == gw["spec"]["selector"]
        assert len(spec["servers"]) == len(gw["spec"]["servers"])
        for ours, server in zip(spec["servers"], gw["spec"]["servers"]):
            assert ours["hosts"] == server["hosts"] == ["*"]
            assert {k: ours["port"][k] for k in ("number", "protocol")} == server["port"]


def test_every_upstream_route_is_rendered(example, rendered):
    mine = index(rendered["gateway"])
    grafana_port = grafana_service_port(rendered)
    for vs in upstream("virtual.yaml"):
        ours = mine[ident(vs)]
        assert ours["apiVersion"] == vs["apiVersion"]
        assert ours["spec"]["gateways"] == vs["spec"]["gateways"]
        assert ours["spec"]["hosts"] == ["*", example.domain]
        assert len(ours["spec"]["http"]) == len(vs["spec"]["http"])
        for route, their in zip(ours["spec"]["http"], vs["spec"]["http"]):
            assert route.get("match") == their.get("match"), ident(vs)
            [destination] = [r["destination"] for r in route["route"]]
            [expected] = [r["destination"] for r in their["route"]]
            assert destination["host"] == expected["host"], ident(vs)
            if ident(vs)[2] == "monitoring-grafana":  # our Grafana serves /grafana/ itself
                assert destination["port"]["number"] == grafana_port
                assert "rewrite" not in route
            else:
                assert destination["port"] == expected["port"], ident(vs)
                assert route.get("rewrite") == their.get("rewrite"), ident(vs)


def grafana_service_port(rendered) -> int:
    [service] = [o for o in rendered["prometheus"] if ident(o) == ("Service", "monitoring", "grafana")]
    return service["spec"]["ports"][0]["port"]


def test_grafana_route_fits_the_prometheus_stages_grafana(rendered):
    """No rewrite: the prometheus stage's Grafana expects the /grafana/ prefix."""
    [config] = [o for o in rendered["prometheus"] if o["metadata"]["name"] == "grafana-config"]
    ini = config["data"]["grafana.ini"]
    assert re.search(r"^\s*serve_from_sub_path\s*=\s*true\s*$", ini, re.MULTILINE)
    assert re.search(r"^\s*root_url\s*=.*/grafana/\s*$", ini, re.MULTILINE)
    assert grafana_service_port(rendered) == gateway.GRAFANA_PORT


def test_root_goes_to_the_frontend_the_cube_stage_renders(rendered, everything):
    [vs] = [o for o in rendered["gateway"] if o["metadata"]["name"] == "infra-kubeflow-dashboard"]
    [destination] = [r["destination"] for http in vs["spec"]["http"] for r in http["route"]]
    name, namespace = destination["host"].split(".")[:2]
    service = everything[("Service", namespace, name)]
    assert destination["port"]["number"] in {p["port"] for p in service["spec"]["ports"]}
    assert name == "kubeflow-dashboard-frontend"


def test_every_routed_service_exists(rendered, everything):
    """Each destination is a Service some enabled stage renders, on a port it serves
    (labelstudio excepted: upstream routes it without installing it)."""
    for vs in (o for o in rendered["gateway"] if o["kind"] == "VirtualService"):
        for http in vs["spec"]["http"]:
            for route in http["route"]:
                destination = route["destination"]
                name, namespace = destination["host"].split(".")[:2]
                if name == "labelstudio":
                    continue
                service = everything[("Service", namespace, name)]
                ports = {p["port"] for p in service["spec"]["ports"]}
                assert destination["port"]["number"] in ports, destination


def test_dashboard_prefixes_are_the_ones_config_py_links_to(rendered):
    with warnings.catch_warnings():  # upstream's file has invalid escapes in strings
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse((U / "cube/overlays/config/config.py").read_text())
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
              and node.targets[0].id in ("K8S_DASHBOARD_CLUSTER", "K8S_DASHBOARD_USER")}
    prefixes = {m["uri"]["prefix"] for o in rendered["gateway"] if o["kind"] == "VirtualService"
                for http in o["spec"]["http"] for m in http.get("match", [])}
    assert set(values.values()) == {"/k8s/dashboard/cluster/", "/k8s/dashboard/user1/"}
    assert set(values.values()) <= prefixes


def test_every_route_but_the_frontend_needs_the_login_cookie(rendered):
    for vs in (o for o in rendered["gateway"] if o["kind"] == "VirtualService"):
        for http in vs["spec"]["http"]:
            if vs["metadata"]["name"] == "infra-kubeflow-dashboard":
                assert "match" not in http  # the login page itself
                continue
            assert http["match"] and all(m["headers"] == gateway.LOGGED_IN for m in http["match"])


def test_routes_follow_the_enabled_stages(tmp_path, seeded_cache):
    site = site_with(tmp_path, components={"kube-batch": {"enabled": False},
                                           "dashboard": {"enabled": False},
                                           "prometheus": {"enabled": False},
                                           "efk": {"enabled": False}})
    names = {o["metadata"]["name"] for o in gateway.render(site) if o["kind"] == "VirtualService"}
    assert names == {"infra-kubeflow-dashboard", "kubeflow-labelstudio", "cube-studio"}
    [extra] = [o for o in gateway.render(site) if o["metadata"]["name"] == "cube-studio"]
    assert [http["name"] for http in extra["spec"]["http"]] == ["argo"]


def required_fields_missing(schema: dict, value, path: str = "") -> list[str]:
    """Fields the CRD's structural schema requires that ``value`` lacks."""
    missing = []
    if isinstance(value, dict):
        missing += [f"{path}.{field}" for field in schema.get("required", []) if field not in value]
        for field, sub in (schema.get("properties") or {}).items():
            if field in value:
                missing += required_fields_missing(sub, value[field], f"{path}.{field}")
    elif isinstance(value, list) and "items" in schema:
        for number, item in enumerate(value):
            missing += required_fields_missing(schema["items"], item, f"{path}[{number}]")
    return missing


def test_gateway_objects_satisfy_the_pinned_istio_schema(rendered):
    """Istio 1.30 requires fields 1.15 did not (a Gateway port's name)."""
    schemas = {}
    for crd in (doc for doc in yaml.safe_load_all(ISTIO_CRDS.read_text()) if doc):
        for version in crd["spec"]["versions"]:
            schemas[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = \
                version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    checked = 0
    for obj in rendered["ingress"] + rendered["gateway"]:
        schema = schemas.get((obj["apiVersion"], obj["kind"]))
        if schema is None:
            continue
        assert required_fields_missing(schema, obj["spec"], "spec") == [], ident(obj)
        checked += 1
    assert checked == 8


# -- dashboards (dashboard/v2.6.1-cluster.yaml, v2.6.1-user.yaml) ----------------------------------


DASHBOARD_FILES = ("dashboard/v2.6.1-cluster.yaml", "dashboard/v2.6.1-user.yaml")


def test_dashboard_rbac_equals_upstreams(rendered):
    mine = index(rendered["dashboard"])
    theirs = [o for path in DASHBOARD_FILES for o in upstream(path) if o["kind"] in RBAC_KINDS]
    assert len(theirs) == 18  # 2 ServiceAccounts, 16 roles and bindings
    for obj in theirs:
        assert ident(obj) in mine, ident(obj)
        assert_same_rbac(mine[ident(obj)], obj)
    assert all(applied_by_start_sh(path) for path in DASHBOARD_FILES)


def test_dashboard_workloads_keep_upstreams_names_accounts_and_services(rendered):
    mine = index(rendered["dashboard"])
    for obj in (o for path in DASHBOARD_FILES for o in upstream(path)):
        if obj["kind"] == "Service":
            ours = mine[ident(obj)]
            assert ours["spec"]["selector"] == obj["spec"]["selector"]
            assert [p["port"] for p in ours["spec"]["ports"]] == [p["port"] for p in obj["spec"]["ports"]]
        elif obj["kind"] == "Deployment":
            ours = mine[ident(obj)]
            pod, their_pod = ours["spec"]["template"]["spec"], obj["spec"]["template"]["spec"]
            assert ours["spec"]["selector"] == obj["spec"]["selector"]  # immutable
            assert pod["nodeSelector"] == their_pod["nodeSelector"]
            if "scraper" in obj["metadata"]["name"]:
                continue  # deliberately its own metrics-only account
            assert pod["serviceAccountName"] == their_pod["serviceAccountName"]
            args, their_args = pod["containers"][0]["args"], their_pod["containers"][0]["args"]
            assert "--namespace=kube-system" in args and "--namespace=kube-system" in their_args
            [sidecar] = [a for a in args if a.startswith("--sidecar-host=")]
            [their_sidecar] = [a for a in their_args if a.startswith("--sidecar-host=")]
            assert sidecar.split("//")[1].split(".")[0] == their_sidecar.split("//")[1].split(":")[0]


# -- namespaces (create_ns_secret.sh) and the platform's accounts ----------------------------------


def create_ns_secret() -> tuple[list[str], set[str]]:
    """(namespaces the script creates with hubsecret, those it takes the label off again)."""
    text = (U / "create_ns_secret.sh").read_text()
    [names] = re.findall(r"^for namespace in (.+)$", text, re.MULTILINE)
    unlabelled = set(re.findall(r"^kubectl label ns (\S+) istio-injection-\s*$", text, re.MULTILINE))
    return re.findall(r"'([a-z0-9-]+)'", names), unlabelled


def test_namespaces_and_pull_secrets_of_create_ns_secret(rendered):
    names, unlabelled = create_ns_secret()
    assert "aihub" in names and unlabelled == {"service"}
    mine = index(rendered["namespaces"])
    for name in names:
        assert ("Secret", name, "hubsecret") in mine, name
        if name in platform.SYSTEM_NAMESPACES:
            assert ("Namespace", "", name) not in mine
            continue
        labels = mine[("Namespace", "", name)]["metadata"].get("labels") or {}
        expected = None if name in unlabelled else "disabled"
        assert labels.get("istio-injection") == expected, name


@pytest.mark.parametrize("path, stage", [
    ("sa-rbac.yaml", "namespaces"),
    ("kubeflow/sa-rbac.yaml", "namespaces"),
    ("argo/pipeline-runner-rolebinding.yaml", "kubeflow"),
])
def test_platform_accounts_and_rbac_equal_upstreams(rendered, path, stage):
    assert applied_by_start_sh(path)
    mine = index(rendered[stage])
    theirs = upstream(path)
    assert theirs and all(o["kind"] in RBAC_KINDS for o in theirs)
    for obj in theirs:
        assert ident(obj) in mine, ident(obj)
        assert_same_rbac(mine[ident(obj)], obj)


def test_the_cluster_wide_rbac_variant_is_not_rendered(everything):
    """sa-rbac-cluster.yaml: neither start script applies it; its cluster-wide bindings
    are not rendered, and what it shares with sa-rbac.yaml is sa-rbac.yaml's."""
    for script in ("start.sh", "start-with-kubesphere.sh"):
        assert "sa-rbac-cluster" not in (U / script).read_text()
    shared = index(upstream("sa-rbac.yaml"))
    for obj in upstream("sa-rbac-cluster.yaml"):
        if ident(obj) in shared:
            assert_same_rbac(everything[ident(obj)], shared[ident(obj)])
        else:
            assert ident(obj) not in everything, ident(obj)


def test_platform_workload_accounts_exist(everything):
    """The accounts the platform's pods name (view_pipeline.py, view_nni.py, spark example)."""
    for namespace, name in (("pipeline", "pipeline-runner"), ("automl", "nni"),
                            ("pipeline", "kubeflow-pipeline"), ("jupyter", "jupyter-user")):
        assert ("ServiceAccount", namespace, name) in everything


# -- volumes (pv-pvc-*.yaml) ------------------------------------------------------------------------


def volume_files() -> list[str]:
    applied = sorted({m for line in start_sh_lines()
                      for m in re.findall(r"kubectl create -f (pv-pvc-[a-z]+\.yaml)", line)})
    assert applied == [f"pv-pvc-{ns}.yaml" for ns in ("automl", "infra", "jupyter", "pipeline",
                                                       "service")]
    return applied + ["pv-pvc-kubeflow.yaml"]  # in the tree, not applied: kept as an extra


def test_volumes_equal_upstreams(rendered):
    mine = index(rendered["pv-pvc"])
    for path in volume_files():
        for obj in upstream(path):
            ours = mine[ident(obj)]
            labels = ours["metadata"].get("labels") or {}
            assert (obj["metadata"].get("labels") or {}).items() <= labels.items(), ident(obj)
            spec = dict(ours["spec"])
            if obj["kind"] == "PersistentVolume":
                claim_ref = spec.pop("claimRef")
                claims = [o for o in upstream(path) if o["kind"] == "PersistentVolumeClaim"
                          and o["spec"]["volumeName"] == obj["metadata"]["name"]]
                assert [(claim_ref["namespace"], claim_ref["name"])] == [
                    (c["metadata"]["namespace"], c["metadata"]["name"]) for c in claims]
            assert spec == obj["spec"], ident(obj)  # the example's mount point is upstream's


def test_volumes_move_with_the_mount_point_and_the_site_overrides(tmp_path, seeded_cache):
    data = example_site_data()
    data["storage"]["mount_point"] = "/mnt/cube"
    data["volumes"] = {"kubeflow-archives": {"size": "2Ti"},
                       "kubeflow-global-pvc": {"path": "/srv/global"}}
    site = load_site(write_site(tmp_path, data))
    objects = index(all_objects(site, only=["pv-pvc"])["pv-pvc"])

    def pv(name):
        return objects[("PersistentVolume", "", name)]["spec"]

    assert pv("infra-kubeflow")["hostPath"] == {"path": "/mnt/cube/kubeflow/"}
    assert pv("automl-kubeflow-user-workspace")["hostPath"]["path"] == \
        "/mnt/cube/kubeflow/pipeline/workspace"
    assert pv("pipeline-kubeflow-global-pv")["hostPath"]["path"] == "/srv/global"
    assert pv("automl-kubeflow-archives")["capacity"]["storage"] == "2Ti"
    claim = objects[("PersistentVolumeClaim", "automl", "kubeflow-archives")]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Ti"


def test_volume_paths_are_directories_the_storage_stage_makes(rendered):
    """Every stage's volumes: their hostPath has no type (upstream's have none), so no
    kubelet makes a missing directory."""
    volumes = [obj for objects in rendered.values() for obj in objects
               if obj["kind"] == "PersistentVolume"]
    assert {v["metadata"]["name"] for v in volumes} >= {
        "infra-mysql-pv", "monitoring-grafana-pv", "logging-elasticsearch-data"}
    for obj in volumes:
        assert "type" not in obj["spec"]["hostPath"], obj["metadata"]["name"]
        relative = obj["spec"]["hostPath"]["path"].removeprefix("/data/k8s/").rstrip("/")
        assert any(d == relative or d.startswith(relative + "/")
                   for d in platform.DATA_DIRECTORIES), relative


def test_every_mounted_claim_is_rendered(rendered, everything):
    """No stage mounts a claim that no stage creates (claims renamed in one place only)."""
    mounted = set()
    for obj in everything.values():
        template = (obj.get("spec") or {}).get("template") or {}
        for volume in (template.get("spec") or {}).get("volumes") or []:
            if "persistentVolumeClaim" in volume:
                mounted.add((obj["metadata"]["namespace"], volume["persistentVolumeClaim"]["claimName"]))
    assert ("infra", "infra-kubeflow") in mounted
    for namespace, claim in mounted:
        assert ("PersistentVolumeClaim", namespace, claim) in everything, (namespace, claim)


def test_every_namespace_used_is_created(everything):
    """E.g. the user dashboard's RoleBinding in aihub needs the namespaces stage's aihub."""
    created = {name for kind, _, name in everything if kind == "Namespace"}
    used = {namespace for _, namespace, _ in everything if namespace}
    assert used - created <= set(platform.SYSTEM_NAMESPACES) | {"default"}
