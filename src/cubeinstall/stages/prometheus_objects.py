"""The prometheus stage's own objects (PLATFORM-FACTS item 11), in namespace monitoring.

stages/prometheus.py combines these with the upstream prometheus-operator (its
CRDs and controller); this module only renders what cube-studio adds:

- a Prometheus ``k8s`` and an Alertmanager ``main`` (custom resources the
  operator turns into StatefulSets), the Prometheus ServiceAccount and RBAC;
- node-exporter (a DaemonSet on every node: metrics are per node) and
  kube-state-metrics, each with a ServiceMonitor;
- Grafana at /grafana/ (Service ``grafana`` on 8080, as cube-studio's)
  with cube-studio's data source, dashboard provider and dashboards;
- cube-studio's own monitoring objects the platform queries (Service
  ``prometheus-k8s``, the kubelet/apiserver/coredns/Prometheus ServiceMonitors,
  the additional scrape jobs): ``cubeinstall.stages.prometheus_upstream``.

Storage: Prometheus' TSDB and Grafana's database live on the shared storage
(<mount_point>/monitoring/prometheus and .../grafana, PVs with Retain), so
history survives a pod moving to another monitoring node. One writer each;
note that Prometheus does not support NFS for its TSDB (CephFS is fine).
Alertmanager keeps its silences in an emptyDir. Grafana's login: see
``Monitoring.grafana_admin_password`` in the site model.
"""

from __future__ import annotations

from cubeinstall.render.engine import render_stage
from cubeinstall.site.model import Site
from cubeinstall.stages import prometheus_upstream
from cubeinstall.stages.workloads import (
    host_volume,
    opaque_secret,
    pod_values,
    roll_on_config_change,
)

STAGE = "prometheus"  # the registry's stage: placement, ownership labels
TEMPLATES = "prometheus-objects"
NAMESPACE = "monitoring"
PROMETHEUS_VERSION = "v3.5.0"
ALERTMANAGER_VERSION = "v0.28.1"
IMAGES = {
    "prometheus": f"quay.io/prometheus/prometheus:{PROMETHEUS_VERSION}",
    "alertmanager": f"quay.io/prometheus/alertmanager:{ALERTMANAGER_VERSION}",
    "node_exporter": "quay.io/prometheus/node-exporter:v1.9.1",
    "kube_state_metrics": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.15.0",
    "grafana": "grafana/grafana:11.6.0",
    "busybox": "busybox:1.36.1",
}
# The operator names the Prometheus data claim <template>-<statefulset>-0:
# we create it ourselves, bound to our PV, and the StatefulSet adopts it.
PROMETHEUS_CLAIM = "prometheus-k8s-db-prometheus-k8s-0"
# Volume names as cube-studio's prometheus/ and grafana/pv-pvc-hostpath.y*ml, so that
# a site start.sh installed keeps its data; PVs carry its label monitoring-pvname.
PROMETHEUS_VOLUME = "monitoring-prometheus-pv"
GRAFANA_VOLUME = "monitoring-grafana-pv"
GRAFANA_CLAIM = "monitoring-grafana-pvc"
PV_NAME_LABEL = "monitoring-pvname"
GRAFANA_ADMIN_SECRET = "grafana-admin"
# Upstream's Service prometheus-k8s selects app=prometheus, which operators since
# v0.5x no longer put on the pods: the Prometheus resource adds it (podMetadata).
PROMETHEUS_POD_LABELS = {"app": "prometheus"}
# cube-studio's grafana-svc.yml: its VirtualService routes to 8080 (container port 3000).
GRAFANA_SERVICE_PORTS = {"http": 8080}


def render(site: Site) -> list[dict]:
    prometheus_volume = _labelled(host_volume(
        site, pv_name=PROMETHEUS_VOLUME, namespace=NAMESPACE,
        claim=PROMETHEUS_CLAIM, size="50Gi", subpath="monitoring/prometheus"))
    upstream = prometheus_upstream.render(site, NAMESPACE)
    [scrape_configs] = [o for o in upstream if o["kind"] == "Secret"]
    objects = render_stage(
        TEMPLATES, namespace=NAMESPACE, images=IMAGES,
        prometheus_version=PROMETHEUS_VERSION, alertmanager_version=ALERTMANAGER_VERSION,
        retention=site.monitoring.retention,
        prometheus_size=_claim_size(prometheus_volume),
        prometheus_volume=PROMETHEUS_VOLUME,
        prometheus_pod_labels=PROMETHEUS_POD_LABELS,
        additional_scrape_configs={"name": scrape_configs["metadata"]["name"],
                                   "key": prometheus_upstream.SCRAPE_CONFIG_KEY},
        grafana_claim=GRAFANA_CLAIM,
        grafana_service_ports=GRAFANA_SERVICE_PORTS,
        grafana_login=site.monitoring.grafana_admin_password is not None,
        grafana_admin_secret=GRAFANA_ADMIN_SECRET,
        **pod_values(site, STAGE))
    objects += upstream
    objects += prometheus_volume
    objects += _labelled(host_volume(site, pv_name=GRAFANA_VOLUME, namespace=NAMESPACE,
                                     claim=GRAFANA_CLAIM, size="10Gi", subpath="monitoring/grafana"))
    if site.monitoring.grafana_admin_password is not None:
        objects.append(opaque_secret(GRAFANA_ADMIN_SECRET, NAMESPACE, {
            "user": "admin", "password": site.monitoring.grafana_admin_password.reveal()}))
    return roll_on_config_change(objects)


def _labelled(volume: list[dict]) -> list[dict]:
    for obj in volume:
        if obj["kind"] == "PersistentVolume":
            labels = obj["metadata"].setdefault("labels", {})
            labels[PV_NAME_LABEL] = obj["metadata"]["name"]
    return volume


def _claim_size(volume: list[dict]) -> str:
    claim = next(o for o in volume if o["kind"] == "PersistentVolumeClaim")
    return claim["spec"]["resources"]["requests"]["storage"]

