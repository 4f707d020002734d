"""A plan covers the whole site in one go, before anything exists (as kapp and helm-diff do).

On a fresh cluster a later stage's objects live in namespaces, or are custom resources of
CRDs, that earlier stages of the same plan would create: they are planned as creations,
never refused by the server's dry-run. Nothing is written.
"""

from __future__ import annotations

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.helpers import json_events, run_cli
from tests.servers.http_upstream import component_site

pytestmark = pytest.mark.cluster

STAGES = ("namespaces", "dashboard", "istio", "ingress", "kubeflow", "gateway")


def test_a_whole_site_plans_on_a_fresh_cluster_and_writes_nothing(tmp_path, capsys):
    with ControlPlane(tmp_path / "cluster") as fresh:
        site = component_site(tmp_path, fresh.kubeconfig)
        only = [word for stage in STAGES for word in ("--only", stage)]
        code, out, err = run_cli(["--json", "plan", "-c", str(site), *only], capsys)
        assert code == 0, out + err
        changes = {(e["stage"], e["target"]): e for e in json_events(out) if e["event"] == "change"}
        # the namespaces stage would create pipeline; the dashboard's binding in it is planned
        assert changes[("namespaces", "Namespace pipeline")]["action"] == "create"
        role = changes[("dashboard", "RoleBinding pipeline/kubernetes-dashboard-pipeline")]
        assert role["action"] == "create" and "namespace" in role["detail"]
        # istio would create the Gateway CRD; the ingress stage's Gateways are planned
        gateways = [e for (stage, target), e in changes.items()
                    if stage == "ingress" and target.startswith("Gateway ")]
        assert gateways and {e["action"] for e in gateways} == {"create"}
        with fresh.api_client() as api:
            from kubernetes import client

            names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
        assert "pipeline" not in names and "istio-system" not in names  # a plan writes nothing
