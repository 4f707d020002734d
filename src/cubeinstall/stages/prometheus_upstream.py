"""The monitoring objects the platform queries, from cube-studio's own install tree.

cube-studio's start.sh (install/kubernetes/start.sh:47-95) creates what its backend and
its Grafana links read; these are those objects, parsed from the pinned files and changed
only by the typed patches below (each difference is one named function or constant):

- Service ``prometheus-k8s`` (config.py ``PROMETHEUS = 'prometheus-k8s.monitoring:9090'``);
- the ServiceMonitors whose metrics the platform and the dashboards query (kubelet with
  /metrics/cadvisor: ``container_*``; apiserver, coredns, Prometheus itself);
- Secret ``prometheus-config`` with the additional scrape jobs (``envoy-stats``:
  ``istio_requests_total``; ``kubernetes-service-endpoints``: annotated Services such as
  ``dcgm-exporter``, whose ``namespace``/``pod`` labels it leaves alone);
- Grafana's dashboard provider, data source and ConfigMap ``all-grafana-dashboards``
  (the JSON files byte for byte, keys = file names, as ``kubectl create configmap
  --from-file`` makes it).
"""

from __future__ import annotations

import json

import yaml

from cubeinstall.core.errors import CubeError
from cubeinstall.site.model import Site
from cubeinstall.stages.workloads import opaque_secret
from cubeinstall.upstream import catalog, manifests

COMPONENT = "cube-studio"
_K8S = "install/kubernetes"
PROMETHEUS_SERVICE = f"{_K8S}/prometheus/prometheus/prometheus-svc.yml"
SCRAPE_CONFIG_SECRET = f"{_K8S}/prometheus/prometheus/prometheus-secret.yml"
SCRAPE_CONFIG_KEY = "prometheus-additional.yaml"
# start.sh:87-94 applies these; the rest of servicemonitor/ is never applied upstream.
# kube-controller-manager and kube-scheduler are left out: their Services
# (service-discovery/*.yml) point at the insecure ports 10252/10251, which Kubernetes
# removed in 1.22/1.23 (install/README.md supports 1.25-1.31). kubestate-metrics-sm.yml
# (ports https-main/https-self of a kube-state-metrics start.sh never deploys) and
# prometheus-operator-sm.yml (label k8s-app, which the pinned operator's Service lacks)
# have working equivalents of the same names: templates/prometheus-objects/exporters.yaml.j2
# and the operator project's own prometheus-operator-service-monitor.yaml.
SERVICE_MONITORS = tuple(f"{_K8S}/prometheus/servicemonitor/{name}" for name in (
    "coredns-sm.yml", "kube-apiserver-sm.yml", "kubelet-sm.yml", "prometheus-sm.yml"))
GRAFANA = f"{_K8S}/prometheus/grafana"
DASHBOARD_PROVIDER = f"{GRAFANA}/grafana-source.yml"
DATASOURCES = f"{GRAFANA}/grafana-datasources.yml"
DASHBOARD_DIRECTORY = f"{GRAFANA}/dashboard/"
DASHBOARDS_CONFIG_MAP = "all-grafana-dashboards"

# The dashboards name their data source {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
# (or by name "prometheus"). Upstream provisions "prometheus" without a uid and Grafana
# derives one from the name: "P" + the first 8 bytes of sha256("prometheus") in upper-case
# hex, which is that value. Said explicitly here, so no Grafana version can differ.
DATASOURCE_UID = "P1809F7CD0C75ACF3"

# The additional scrape jobs kept from prometheus-secret.yml. Left out: the Mixer-era
# istio jobs (istio-mesh, istio-policy, istio-telemetry, pilot, galley, citadel: their
# Services do not exist since istio 1.5), kubernetes-apiservers and kubernetes-nodes
# (the kube-apiserver and kubelet ServiceMonitors scrape the same endpoints; the nodes job
# also needs nodes/proxy) and kubernetes-pods-istio-secure (its certificates under
# /etc/istio-certs are never mounted into Prometheus).
SCRAPE_JOBS = ("prometheus", "envoy-stats", "kubernetes-service-endpoints", "kubernetes-pods")
# Prometheus 3 refuses a target whose Content-Type is missing or unknown, which 2.x
# (upstream runs 2.27.1) parsed as the text format: keep 2.x's behaviour for these jobs.
FALLBACK_SCRAPE_PROTOCOL = "PrometheusText0.0.4"

# kubeadm (and kubespray) name kube-dns's metrics port "metrics" (9153); upstream's
# coredns ServiceMonitor asks for "http-metrics", which no such Service has.
COREDNS_METRICS_PORT = "metrics"


def _pinned(site: Site) -> str:
    return f"{COMPONENT} {catalog.resolve(site, COMPONENT).version}"


def prometheus_service(site: Site) -> list[dict]:
    """Service prometheus-k8s exactly as upstream (its selector ``app: prometheus`` is on
    the pods through the Prometheus resource's podMetadata, see prometheus.yaml.j2)."""
    return manifests.objects(site, COMPONENT, [PROMETHEUS_SERVICE])


def service_monitors(site: Site) -> list[dict]:
    monitors = manifests.objects(site, COMPONENT, SERVICE_MONITORS)
    for monitor in monitors:
        if monitor["metadata"]["name"] == "coredns":
            for endpoint in monitor["spec"]["endpoints"]:
                endpoint["port"] = COREDNS_METRICS_PORT
    return monitors


def scrape_config_secret(site: Site) -> list[dict]:
    """Secret prometheus-config with upstream's scrape jobs named in SCRAPE_JOBS."""
    [secret] = manifests.objects(site, COMPONENT, [SCRAPE_CONFIG_SECRET])
    jobs = {job["job_name"]: job
            for job in yaml.safe_load(secret["stringData"][SCRAPE_CONFIG_KEY])}
    missing = [name for name in SCRAPE_JOBS if name not in jobs]
    if missing:
        raise CubeError(f"{_pinned(site)} {SCRAPE_CONFIG_SECRET}: no scrape job {missing}",
                        hint="cubeinstall keeps these jobs of upstream's additional scrape "
                             "configuration; report the version to cubeinstall")
    kept = [{**jobs[name], "fallback_scrape_protocol": FALLBACK_SCRAPE_PROTOCOL}
            for name in SCRAPE_JOBS]
    text = yaml.safe_dump(kept, sort_keys=False, default_flow_style=False)
    metadata = secret["metadata"]
    return [opaque_secret(metadata["name"], metadata["namespace"], {SCRAPE_CONFIG_KEY: text},
                          labels=metadata.get("labels"))]


def grafana_provisioning(site: Site) -> list[dict]:
    """Grafana's dashboard provider and data source (ConfigMaps grafana-dashboards and
    grafana-datasources), as upstream, the data source with the uid the dashboards use."""
    provider = []
    for obj in manifests.objects(site, COMPONENT, [DASHBOARD_PROVIDER]):
        provider += obj["items"] if obj["kind"].endswith("List") else [obj]
    [datasources] = manifests.objects(site, COMPONENT, [DATASOURCES])
    for key, text in datasources["data"].items():
        config = json.loads(text)
        prometheus = [d for d in config["datasources"] if d["name"] == "prometheus"]
        if len(prometheus) != 1:
            raise CubeError(f"{_pinned(site)} {DATASOURCES} {key}: expected one data source "
                            f"named 'prometheus', found {len(prometheus)}",
                            hint="the dashboards reference it; report the version to cubeinstall")
        # The only data source: the default of cluster-req-util's $datasource variable.
        prometheus[0].update(uid=DATASOURCE_UID, isDefault=True)
        datasources["data"][key] = json.dumps(config, indent=2)
    return provider + [datasources]


def dashboard_files(site: Site) -> list[str]:
    """The pinned dashboard files, in name order."""
    paths = [item.path for item in manifests.files(site, COMPONENT)
             if item.path.startswith(DASHBOARD_DIRECTORY) and item.path.endswith(".json")]
    if not paths:
        raise CubeError(f"{_pinned(site)}: no Grafana dashboards under {DASHBOARD_DIRECTORY}",
                        hint="the catalog must pin the platform's dashboards")
    return sorted(paths)


def dashboards(site: Site, namespace: str) -> list[dict]:
    """ConfigMap all-grafana-dashboards: every pinned JSON file, unchanged."""
    data = {path.rpartition("/")[2]: manifests.text(site, COMPONENT, path)
            for path in dashboard_files(site)}
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": DASHBOARDS_CONFIG_MAP, "namespace": namespace},
             "data": data}]


def render(site: Site, namespace: str) -> list[dict]:
    """Every object above; upstream puts them all in ``namespace`` (monitoring) already."""
    objects = (prometheus_service(site) + service_monitors(site) + scrape_config_secret(site)
               + grafana_provisioning(site) + dashboards(site, namespace))
    wrong = [o["metadata"]["name"] for o in objects if o["metadata"].get("namespace") != namespace]
    if wrong:
        raise CubeError(f"{_pinned(site)}: {wrong} not in namespace {namespace}",
                        hint="report the version to cubeinstall")
    return objects
