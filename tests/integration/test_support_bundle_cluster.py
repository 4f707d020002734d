"""The failure support bundle against the real control plane (kwok nodes).

- `cubeinstall stage redis` for a site that places Redis on a label the site
  gives node1 but the cluster's node1 does not carry (node-labels never ran):
  the Deployment cannot schedule, the stage fails after its 5 s object timeout,
  and the printed bundle holds the FailedScheduling event, the Deployment, its
  Unschedulable pod, why that pod has no logs, and no value of the stage's Secret.
- Logs: kwok serves the kubelet API on one loopback address only
  (tests/cluster/nodes.py KUBELET_ADDRESS); a pod on a node there has its log
  lines quoted, a pod on a default node gets the reason its logs could not be
  read (the API server cannot reach a kubelet at 127.0.10.11).
"""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

import pytest

from cubeinstall.kube.apply import apply_objects, uninstall_stage
from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.errors import ApplyFailed
from cubeinstall.kube.support import collect
from cubeinstall.run.support_text import cluster_sections
from tests.cluster.nodes import FAKE_LOG_LINES, KUBELET_ADDRESS, FakeNode
from tests.helpers import (
    EXAMPLE_SITE,
    example_site_data,
    json_events,
    run_cli,
    write_site,
)

pytestmark = pytest.mark.cluster

PLACEMENT = "support-bundle-test"
TIMEOUT = 60
local_only = pytest.mark.skipif(bool(os.environ.get("CUBEINSTALL_TEST_KUBECONFIG")),
                                reason="kwok's kubelet API belongs to the local control plane")


@pytest.fixture(scope="module")
def client(kube_cluster):
    return KubeClient.from_kubeconfig(kube_cluster.kubeconfig)


@pytest.fixture
def unplaceable_site(tmp_path, kube_cluster, client, monkeypatch, capsys) -> Path:
    monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path / "state"))
    data = example_site_data()
    data["site"] = "bundle-test"
    data["clusters"] = [{"name": "main", "kubeconfig": str(kube_cluster.kubeconfig)}]
    data["gates"] = {"webhooks": "skip", "services": "skip"}
    data["timeouts"] = {"object_seconds": 5, "stage_seconds": TIMEOUT}
    # The site says node1 carries the label; the cluster's node1 does not.
    data["nodes"][0]["labels"] = {PLACEMENT: "true"}
    data["components"] = {**data["components"], "redis": {"placement": PLACEMENT}}
    path = write_site(tmp_path, data)
    code, out, _ = run_cli(["--json", "stage", "namespaces", "-c", str(path)], capsys)
    assert code == 0, [e for e in json_events(out) if e["event"] in ("error", "stage-failed")]
    yield path
    uninstall_stage(client, "redis", purge=True, timeout=TIMEOUT)


def test_failed_cluster_stage_writes_a_bundle_and_prints_its_path(unplaceable_site, tmp_path,
                                                                  capsys):
    code, out, _ = run_cli(["--json", "stage", "redis", "-c", str(unplaceable_site)], capsys)

    assert code == 1
    events = json_events(out)
    [failed] = [e for e in events if e["event"] == "stage-failed"]
    path = Path(failed["support_bundle"])
    assert path.parent == tmp_path / "state" / "support"
    assert re.fullmatch(r"bundle-test-redis-\d{8}T\d{6}\.txt", path.name), path.name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"support bundle: {path}" in events[-1]["message"]

    text = path.read_text()
    assert "site:     bundle-test\nstage:    redis\n" in text
    assert f"0/3 nodes match node selector {PLACEMENT}=true" in text  # the failure itself
    assert "--- Deployment infra/redis: 0/1 replicas available" in text
    pod = re.search(r"^--- Pod (infra/redis-[a-z0-9]+-[a-z0-9]+): phase Pending, node \(none\)",
                    text, re.MULTILINE)
    assert pod, text
    assert "PodScheduled=False  Unschedulable: 0/3 nodes are available" in text
    assert f"--- pod {pod.group(1)}: no log: the pod is not scheduled on a node" in text
    assert re.search(rf"Warning +FailedScheduling +Pod {pod.group(1)} ", text), text
    assert "- Secret infra/redis-credentials" in text  # named, ready, never described

    password = (EXAMPLE_SITE.parent / "secrets" / "redis-password.demo").read_text().strip()
    assert len(password) >= 8
    for secret in (password, base64.b64encode(password.encode()).decode(),
                   base64.b64encode(f"requirepass \"{password}\"\n".encode()).decode()):
        assert secret not in text

    code, _, err = run_cli(["--no-color", "stage", "redis", "-c", str(unplaceable_site)], capsys)
    assert code == 1
    printed = re.search(r"support bundle: (\S+)", err)
    assert printed, err
    assert Path(printed.group(1)) != path and "FailedScheduling" in Path(printed.group(1)).read_text()


LOGS_LABEL = "cubeinstall.io/test-kubelet-api"


def spread_deployment(name: str, namespace: str, node_selector: dict, **pod_spec) -> dict:
    """Two replicas with the same hostPort on a one-node selector: one runs, one stays Pending."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "nodeSelector": node_selector, **pod_spec,
                         "containers": [{"name": "main", "image": "registry.invalid/app:1",
                                         "ports": [{"containerPort": 80, "hostPort": 31999}]}]}}}}


@local_only
def test_bundle_quotes_the_logs_the_kubelet_api_serves(kube_cluster, client, test_namespace):
    node = FakeNode("kubelet-api", labels={LOGS_LABEL: "true"}, address=KUBELET_ADDRESS,
                    kubelet_port=kube_cluster.control_plane.kubelet_port,
                    taints=({"key": LOGS_LABEL, "value": "true", "effect": "NoSchedule"},))
    kube_cluster.add_node(node)
    stage = "support-bundle-logs-test"
    logged = spread_deployment("logged", test_namespace, {LOGS_LABEL: "true"}, tolerations=[
        {"key": LOGS_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}])
    unlogged = spread_deployment("unlogged", test_namespace, {"kubernetes.io/hostname": "node1"})
    try:
        with pytest.raises(ApplyFailed) as failure:
            apply_objects(client, stage, [logged, unlogged], timeout=5)
        state = collect(client, stage, [logged, unlogged], failure.value.targets)
    finally:
        uninstall_stage(client, stage, timeout=TIMEOUT)
        client.delete(client.resolve("v1", "Node"), None, node.name)

    text = "\n".join(cluster_sections(state))
    running = {pod["metadata"]["name"].split("-")[0]: pod["metadata"]["name"] for pod in state.pods
               if pod["spec"].get("nodeName")}
    assert set(running) == {"logged", "unlogged"}, text
    quoted = (f"--- pod {test_namespace}/{running['logged']} container main (current), "
              "last 50 lines:\n" + "\n".join(f"    | {line}" for line in FAKE_LOG_LINES))
    assert quoted in text
    assert re.search(rf"--- pod {test_namespace}/{running['unlogged']} container main \(current\): "
                     r"no log: .*127\.0\.10\.11:10250.*connection refused", text), text
    assert f"the current log of container main of pod {test_namespace}/{running['unlogged']}" \
           in text.split("== could not be collected")[1]
    assert "didn't have free ports for the requested pod ports" in text  # the Pending replicas
    assert text.count("no log: the pod is not scheduled on a node") == 2
