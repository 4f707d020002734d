"""Monitoring and GPU objects of the rendered example site against cube-studio's own files.

The platform reads Prometheus at config.py's PROMETHEUS, queries kubelet/cAdvisor,
istio and dcgm metrics (myapp/utils/py/py_prometheus.py) and links to Grafana
dashboards by uid (config.py GRAFANA_*_PATH). The test cluster runs no container, so
these tests compare what cubeinstall renders with the pinned upstream files read from
../shared/upstream (never through cubeinstall's own reader). Every difference allowed
here is one the parity report lists.
"""

from __future__ import annotations

import ast
import base64
import configparser
import hashlib
import json
import re
import warnings

import pytest
import yaml

from cubeinstall.core.yamlio import load_documents
from cubeinstall.site import stages as registry
from cubeinstall.site.loader import load_site
from cubeinstall.stages import gpu, prometheus_upstream
from cubeinstall.stages.rendered import all_objects
from tests.helpers import EXAMPLE_SITE, SHARED, example_site_data, write_site

K8S = SHARED / "upstream" / "cube-studio" / "v2026.03.01" / "install" / "kubernetes"
PROM = K8S / "prometheus"
CONFIG_PY = K8S / "cube" / "overlays" / "config" / "config.py"
# What prometheus-operator v0.93.0 puts on the pods of Prometheus <name>
# (pkg/prometheus/server/operator.go makeSelectorLabels) and on the kubelet Service it
# keeps for --kubelet-service (pkg/kubelet/controller.go: k8s-app=kubelet, https-metrics).
OPERATOR_POD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/managed-by",
                       "app.kubernetes.io/instance", "operator.prometheus.io/name", "prometheus")
KUBELET_SERVICE = {"labels": {"k8s-app": "kubelet"}, "port": "https-metrics"}


def upstream(path) -> list[dict]:
    return [doc for doc in load_documents(path.read_text()) if doc]


def config_py_value(name: str):
    """A top-level assignment of the platform's config.py, evaluated."""
    with warnings.catch_warnings():  # the file has regexes in plain strings
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(CONFIG_PY.read_text())
    [value] = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and any(getattr(t, "id", None) == name for t in node.targets)]
    return ast.literal_eval(value)


@pytest.fixture(scope="module")
def rendered():
    return all_objects(load_site(EXAMPLE_SITE))


@pytest.fixture(scope="module")
def monitoring(rendered):
    return rendered["prometheus"]


def find(objects, kind, name, namespace=None):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
             and (namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"{kind} {namespace}/{name}: {len(found)} rendered"
    return found[0]


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
    return True


# -- Prometheus: the Service the platform queries ------------------------------------------------


def test_prometheus_k8s_service_is_upstreams(monitoring):
    [expected] = upstream(PROM / "prometheus" / "prometheus-svc.yml")
    service = find(monitoring, "Service", "prometheus-k8s", "monitoring")
    assert service["spec"] == expected["spec"]
    assert service["metadata"]["labels"] == expected["metadata"]["labels"]


def test_config_py_prometheus_address_is_served(monitoring):
    host, port = config_py_value("PROMETHEUS").split(":")
    name, namespace = host.split(".")
    service = find(monitoring, "Service", name, namespace)
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]


def test_prometheus_pods_carry_the_labels_the_service_selects(monitoring):
    prometheus = find(monitoring, "Prometheus", "k8s", "monitoring")
    service = find(monitoring, "Service", "prometheus-k8s", "monitoring")
    pod_labels = {**prometheus["spec"]["podMetadata"]["labels"],
                  "prometheus": "k8s", "operator.prometheus.io/name": "k8s"}
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels)
    # podMetadata may not override what the operator selects its pods by
    assert not set(prometheus["spec"]["podMetadata"]["labels"]) & set(OPERATOR_POD_LABELS)


# -- ServiceMonitors ------------------------------------------------------------------------------

SAME_AS_UPSTREAM = ("kubelet-sm.yml", "kube-apiserver-sm.yml", "prometheus-sm.yml")


@pytest.mark.parametrize("file", SAME_AS_UPSTREAM)
def test_service_monitor_is_upstreams(monitoring, file):
    [expected] = upstream(PROM / "servicemonitor" / file)
    monitor = find(monitoring, "ServiceMonitor", expected["metadata"]["name"], "monitoring")
    assert monitor["spec"] == expected["spec"]
    assert monitor["metadata"]["labels"] == expected["metadata"]["labels"]


def test_kubelet_monitor_scrapes_cadvisor_with_its_labels(monitoring):
    monitor = find(monitoring, "ServiceMonitor", "kubelet", "monitoring")
    paths = [e.get("path", "/metrics") for e in monitor["spec"]["endpoints"]]
    assert paths == ["/metrics", "/metrics/cadvisor"]
    assert all(e["honorLabels"] and e["port"] == KUBELET_SERVICE["port"]
               for e in monitor["spec"]["endpoints"])
    assert selects(monitor["spec"]["selector"], KUBELET_SERVICE["labels"])
    assert monitor["spec"]["jobLabel"] == "k8s-app"  # job="kubelet", as the dashboards query
    operator = find(monitoring, "Deployment", "prometheus-operator", "monitoring")
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    namespace = monitor["spec"]["namespaceSelector"]["matchNames"][0]
    assert f"--kubelet-service={namespace}/kubelet" in args


def test_coredns_monitor_differs_only_by_the_metrics_port(monitoring):
    [expected] = upstream(PROM / "servicemonitor" / "coredns-sm.yml")
    monitor = find(monitoring, "ServiceMonitor", "coredns", "monitoring")
    for endpoint in expected["spec"]["endpoints"]:
        endpoint["port"] = "metrics"  # kubeadm's kube-dns Service names 9153 "metrics"
    assert monitor["spec"] == expected["spec"]


def test_operator_and_kube_state_metrics_monitors_select_a_rendered_service(monitoring):
    for file in ("prometheus-operator-sm.yml", "kubestate-metrics-sm.yml"):
        [expected] = upstream(PROM / "servicemonitor" / file)
        name = expected["metadata"]["name"]
        monitor = find(monitoring, "ServiceMonitor", name, "monitoring")
        services = [o for o in monitoring if o["kind"] == "Service"
                    and selects(monitor["spec"]["selector"], o["metadata"].get("labels") or {})]
        assert [s["metadata"]["name"] for s in services] == [name]
        ports = {p["name"] for p in services[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def test_prometheus_selects_every_service_monitor(monitoring):
    prometheus = find(monitoring, "Prometheus", "k8s", "monitoring")
    [upstream_prometheus] = upstream(PROM / "prometheus" / "prometheus-main.yml")
    monitors = [o for o in monitoring if o["kind"] == "ServiceMonitor"]
    assert len(monitors) >= 6
    for monitor in monitors:
        assert selects(prometheus["spec"]["serviceMonitorSelector"], monitor["metadata"].get("labels") or {})
        assert prometheus["spec"]["serviceMonitorNamespaceSelector"] == {}  # every namespace
    # upstream's own selector (k8s-app Exists) would select upstream's monitors as well
    for file in SAME_AS_UPSTREAM + ("coredns-sm.yml",):
        [expected] = upstream(PROM / "servicemonitor" / file)
        assert selects(upstream_prometheus["spec"]["serviceMonitorSelector"], expected["metadata"]["labels"])


def test_no_monitor_for_the_removed_insecure_control_plane_ports(monitoring):
    names = {o["metadata"]["name"] for o in monitoring if o["kind"] in ("ServiceMonitor", "Service")}
    assert not names & {"kube-controller-manager", "kube-scheduler"}


# -- additional scrape jobs -----------------------------------------------------------------------


def scrape_jobs(monitoring) -> list[dict]:
    secret = find(monitoring, "Secret", "prometheus-config", "monitoring")
    return yaml.safe_load(base64.b64decode(secret["data"]["prometheus-additional.yaml"]))


def test_additional_scrape_jobs_are_upstreams_kept_ones(monitoring):
    [secret] = upstream(PROM / "prometheus" / "prometheus-secret.yml")
    expected = {job["job_name"]: job for job in yaml.safe_load(secret["stringData"]["prometheus-additional.yaml"])}
    jobs = scrape_jobs(monitoring)
    assert [job["job_name"] for job in jobs] == list(prometheus_upstream.SCRAPE_JOBS)
    for job in jobs:
        assert {k: v for k, v in job.items() if k != "fallback_scrape_protocol"} == expected[job["job_name"]]
        assert job["fallback_scrape_protocol"] == "PrometheusText0.0.4"
    # istio_requests_total (py_prometheus.py:24) comes from the envoy-stats job
    assert "envoy-stats" in [job["job_name"] for job in jobs]


def test_prometheus_reads_the_scrape_jobs_as_upstream(monitoring):
    [upstream_prometheus] = upstream(PROM / "prometheus" / "prometheus-main.yml")
    prometheus = find(monitoring, "Prometheus", "k8s", "monitoring")
    assert prometheus["spec"]["additionalScrapeConfigs"] == upstream_prometheus["spec"]["additionalScrapeConfigs"]


# -- Grafana --------------------------------------------------------------------------------------

DASHBOARDS = PROM / "grafana" / "dashboard"


def dashboards_config_map(monitoring) -> dict:
    return find(monitoring, "ConfigMap", "all-grafana-dashboards", "monitoring")


def test_grafana_dashboards_are_the_pinned_files(monitoring):
    files = {path.name: path.read_text(encoding="utf-8") for path in DASHBOARDS.glob("*.json")}
    assert len(files) == 7
    assert dashboards_config_map(monitoring)["data"] == files


def test_every_dashboard_the_platform_links_to_exists(monitoring):
    uids = {json.loads(text)["uid"] for text in dashboards_config_map(monitoring)["data"].values()}
    links = [config_py_value(name) for name in ("GRAFANA_TASK_PATH", "GRAFANA_SERVICE_PATH",
                                                 "GRAFANA_CLUSTER_PATH", "GRAFANA_NODE_PATH",
                                                 "GRAFANA_GPU_PATH")]
    linked = {re.match(r"/grafana/d/([^/]+)/", link).group(1) for link in links}
    assert linked == {"pod-info", "istio-service", "all-node", "node", "dcgm"}
    assert linked <= uids


def provisioned_datasources(monitoring) -> list[dict]:
    config_map = find(monitoring, "ConfigMap", "grafana-datasources", "monitoring")
    return [source for text in config_map["data"].values()
            for source in yaml.safe_load(text)["datasources"]]


def test_the_datasource_the_dashboards_reference_exists(monitoring):
    sources = provisioned_datasources(monitoring)
    uids, names = {s.get("uid") for s in sources}, {s["name"] for s in sources}
    builtin = {"grafana", "-- Grafana --", "$datasource"}  # Grafana's own / a variable
    for name, text in dashboards_config_map(monitoring)["data"].items():
        for ref in re.findall(r'"datasource": (\{[^{}]*\}|"[^"]*")', text):
            ref = json.loads(ref)
            if isinstance(ref, dict):
                assert ref.get("uid") in uids | builtin, (name, ref)
            else:
                assert ref in names | uids | builtin, (name, ref)
    # Grafana's uid for a data source provisioned without one: derived from its name
    # (upstream provisions "prometheus" without uid; the dashboards saved this one)
    assert prometheus_upstream.DATASOURCE_UID == \
        "P" + hashlib.sha256(b"prometheus").hexdigest()[:16].upper()


def test_datasource_is_upstreams_with_the_uid(monitoring):
    [config_map] = upstream(PROM / "grafana" / "grafana-datasources.yml")
    [expected] = json.loads(config_map["data"]["prometheus.yaml"])["datasources"]
    [source] = provisioned_datasources(monitoring)
    assert source == {**expected, "uid": "P1809F7CD0C75ACF3", "isDefault": True}
    host, port = re.match(r"http://([^:/]+):(\d+)$", source["url"]).groups()
    name, namespace = host.split(".")[:2]
    service = find(monitoring, "Service", name, namespace)
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]


def test_dashboard_provider_is_upstreams(monitoring):
    [config_list] = upstream(PROM / "grafana" / "grafana-source.yml")
    [expected] = config_list["items"]
    provider = find(monitoring, "ConfigMap", "grafana-dashboards", "monitoring")
    assert provider["data"] == expected["data"]


def grafana_mounts(deployment) -> dict[str, tuple]:
    """mount path -> (ConfigMap or claim name, subPath) of the grafana container."""
    spec = deployment["spec"]["template"]["spec"]
    sources = {v["name"]: (v.get("configMap") or {}).get("name")
               or (v.get("persistentVolumeClaim") or {}).get("claimName") for v in spec["volumes"]}
    [container] = [c for c in spec["containers"] if c["name"] == "grafana"]
    return {m["mountPath"].rstrip("/"): (sources.get(m["name"]), m.get("subPath"))
            for m in container["volumeMounts"]}


def test_grafana_mounts_configuration_where_upstream_does(monitoring):
    [expected] = upstream(PROM / "grafana" / "grafana-dp.yml")
    wanted = {path: source for path, source in grafana_mounts(expected).items()
              if path.startswith(("/etc/grafana", "/grafana-dashboard"))}
    assert len(wanted) == 4
    mounts = grafana_mounts(find(monitoring, "Deployment", "grafana", "monitoring"))
    assert {path: mounts.get(path) for path in wanted} == wanted
    # upstream's claim name too (its data directory differs: see the parity report)
    assert mounts["/var/lib/grafana"][0] == grafana_mounts(expected)["/var/lib/grafana"][0]
    provider = json.loads(find(monitoring, "ConfigMap", "grafana-dashboards", "monitoring")
                          ["data"]["dashboards.yaml"])
    assert [p["options"]["path"] for p in provider] == ["/grafana-dashboard-definitions/0"]


def test_grafana_serves_under_the_sub_path_as_upstream(monitoring, rendered):
    ini = configparser.ConfigParser(interpolation=None, strict=False)
    ini.read_string(find(monitoring, "ConfigMap", "grafana-config", "monitoring")["data"]["grafana.ini"])
    theirs = configparser.ConfigParser(interpolation=None, strict=False)
    # upstream's file sets app_mode before any section
    theirs.read_string("[top]\n" + (PROM / "grafana" / "grafana.ini").read_text())
    for key in ("root_url", "serve_from_sub_path", "http_port"):
        assert ini["server"][key] == theirs["server"][key], key
    assert ini["auth.anonymous"]["enabled"] == "true"
    # the gateway's /grafana/ route reaches a port of the grafana Service
    service = find(monitoring, "Service", "grafana", "monitoring")
    ports = {p["port"] for p in service["spec"]["ports"]}
    [upstream_service] = upstream(PROM / "grafana" / "grafana-svc.yml")
    assert {p["port"] for p in upstream_service["spec"]["ports"]} <= ports
    routes = [route for vs in rendered["gateway"] if vs["kind"] == "VirtualService"
              for route in vs["spec"]["http"]
              if any(m.get("uri", {}).get("prefix") == "/grafana/" for m in route.get("match", []))]
    assert routes
    for route in routes:
        for destination in route["route"]:
            assert destination["destination"]["host"].startswith("grafana.monitoring.")
            assert destination["destination"]["port"]["number"] in ports


# -- GPU ------------------------------------------------------------------------------------------


def test_gpu_objects_are_upstreams(example_site_gpu):
    site, objects = example_site_gpu
    expected = upstream(K8S / "gpu" / "nvidia-device-plugin.yml") + upstream(K8S / "gpu" / "dcgm-exporter.yaml")
    assert gpu.render(site) == expected  # pull policy IfNotPresent and affinity gpu=true already
    names = [(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects]
    assert names == [("DaemonSet", "kube-system", "nvidia-device-plugin-daemonset"),
                     ("DaemonSet", "monitoring", "dcgm-exporter"), ("Service", "monitoring", "dcgm-exporter")]
    for final, pinned in zip(objects, expected):
        if final["kind"] != "DaemonSet":
            assert final == pinned
            continue
        spec, theirs = final["spec"]["template"]["spec"], pinned["spec"]["template"]["spec"]
        assert spec["imagePullSecrets"] == [{"name": "hubsecret"}]
        assert {k: v for k, v in spec.items() if k not in ("imagePullSecrets", "containers")} == \
            {k: v for k, v in theirs.items() if k != "containers"}
        for container, their in zip(spec["containers"], theirs["containers"]):
            assert container["image"].startswith("harbor.example.com/")
            assert container["image"].endswith(their["image"].rsplit("/", 1)[1])
            assert {k: v for k, v in container.items() if k != "image"} == \
                {k: v for k, v in their.items() if k != "image"}
        assert final["spec"]["selector"] == pinned["spec"]["selector"]


@pytest.fixture(scope="module")
def example_site_gpu(rendered):
    return load_site(EXAMPLE_SITE), rendered["gpu"]


def test_gpu_nodes_get_the_label_the_daemonsets_require(rendered):
    labelled = {o["metadata"]["name"] for o in rendered["node-labels"]
                if o["metadata"]["labels"].get("gpu") == "true"}
    assert labelled == {"gpu1"}
    for daemonset in (o for o in rendered["gpu"] if o["kind"] == "DaemonSet"):
        terms = daemonset["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert any(selects(term, {"gpu": "true"}) for term in terms)
        assert not any(selects(term, {}) for term in terms)


def test_dcgm_exporter_is_scraped_keeping_the_gpu_pods_labels(rendered, monitoring):
    service = find(rendered["gpu"], "Service", "dcgm-exporter", "monitoring")
    daemonset = find(rendered["gpu"], "DaemonSet", "dcgm-exporter", "monitoring")
    annotations = service["metadata"]["annotations"]
    [job] = [j for j in scrape_jobs(monitoring) if j["job_name"] == "kubernetes-service-endpoints"]
    [keep] = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keep["source_labels"] == ["__meta_kubernetes_service_annotation_prometheus_io_scrape"]
    regex = keep["regex"]  # YAML reads upstream's `regex: true` as a boolean; Prometheus as text
    assert re.fullmatch(str(regex).lower() if isinstance(regex, bool) else regex,
                        annotations["prometheus.io/scrape"])
    [port] = daemonset["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    # DCGM_FI_DEV_GPU_UTIL{namespace=..., pod=...} (py_prometheus.py:104, 301, 392): the job
    # must not overwrite the exporter's labels naming the GPU pod
    assert not {r.get("target_label") for r in job["relabel_configs"]} & {"namespace", "pod"}
    assert not any(o["kind"] == "ServiceMonitor" and "dcgm" in o["metadata"]["name"]
                   for objects in rendered.values() for o in objects)


def test_gpu_stage_only_with_gpu_nodes(tmp_path):
    stage = registry.get("gpu")
    assert stage.enabled(load_site(EXAMPLE_SITE))
    data = example_site_data()
    data["nodes"] = [n for n in data["nodes"] if "gpu" not in n["roles"]]
    site = load_site(write_site(tmp_path, data))
    assert not stage.enabled(site)
    assert "gpu" not in all_objects(site)


def test_gpu_placement_override_moves_the_affinity(tmp_path):
    data = example_site_data()
    data["components"]["gpu"] = {"placement": "nvidia"}
    [gpu_node] = [n for n in data["nodes"] if "gpu" in n["roles"]]
    gpu_node["labels"] = {"nvidia": "true"}
    site = load_site(write_site(tmp_path, data))
    keys = {expression["key"] for daemonset in gpu.render(site) if daemonset["kind"] == "DaemonSet"
            for term in daemonset["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            for expression in term["matchExpressions"]}
    assert keys == {"nvidia", "vgpu"}


def test_node_metrics_are_found_by_the_host_ip_the_platform_links_with(monitoring):
    """The node dashboard is opened with var-node=<pod's host IP> (view_total_resource.py:293)
    and filters instance=~"$node.*": node-exporter's instance must be <node IP>:port, as
    upstream's is (host network, no relabelling)."""
    daemonset = find(monitoring, "DaemonSet", "node-exporter", "monitoring")
    assert daemonset["spec"]["template"]["spec"]["hostNetwork"] is True
    monitor = find(monitoring, "ServiceMonitor", "node-exporter", "monitoring")
    for endpoint in monitor["spec"]["endpoints"]:
        assert "instance" not in {r.get("targetLabel") for r in endpoint.get("relabelings") or []}
    [expected] = upstream(PROM / "servicemonitor" / "node-exporter-sm.yml")
    assert not any(e.get("relabelings") for e in expected["spec"]["endpoints"])
    node_dashboard = json.loads(dashboards_config_map(monitoring)["data"]["node.json"])
    assert 'instance=~\\"$node.*\\"' in json.dumps(node_dashboard)
