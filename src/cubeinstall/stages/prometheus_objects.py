"""The prometheus stage's own objects (PLATFORM-FACTS item 11), in namespace monitoring.

stages/prometheus.py combines these with the upstream prometheus-operator (its
CRDs and controller); this module only renders what cube-studio adds:

- a Prometheus ``k8s`` and an Alertmanager ``main`` (custom resources the
  operator turns into StatefulSets), the Prometheus ServiceAccount and RBAC;
- node-exporter (a DaemonSet on every node: metrics are per node) and
  kube-state-metrics, each with a ServiceMonitor;
- Grafana at /grafana/ (Service ``grafana`` 3000) with Prometheus provisioned
  as its data source.

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
GRAFANA_ADMIN_SECRET = "grafana-admin"


def render(site: Site) -> list[dict]:
    prometheus_volume = host_volume(
        site, pv_name="monitoring-prometheus-k8s-db", namespace=NAMESPACE,
        claim=PROMETHEUS_CLAIM, size="50Gi", subpath="monitoring/prometheus")
    objects = render_stage(
        TEMPLATES, namespace=NAMESPACE, images=IMAGES,
        prometheus_version=PROMETHEUS_VERSION, alertmanager_version=ALERTMANAGER_VERSION,
        retention=site.monitoring.retention,
        prometheus_size=_claim_size(prometheus_volume),
        grafana_login=site.monitoring.grafana_admin_password is not None,
        grafana_admin_secret=GRAFANA_ADMIN_SECRET,
        **pod_values(site, STAGE))
    objects += prometheus_volume
    objects += host_volume(site, pv_name="monitoring-grafana", namespace=NAMESPACE,
                           claim="grafana", size="10Gi", subpath="monitoring/grafana")
    if site.monitoring.grafana_admin_password is not None:
        objects.append(opaque_secret(GRAFANA_ADMIN_SECRET, NAMESPACE, {
            "user": "admin", "password": site.monitoring.grafana_admin_password.reveal()}))
    return roll_on_config_change(objects)


def _claim_size(volume: list[dict]) -> str:
    claim = next(o for o in volume if o["kind"] == "PersistentVolumeClaim")
    return claim["spec"]["resources"]["requests"]["storage"]

