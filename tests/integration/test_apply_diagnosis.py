"""The apply engine's diagnosis of failing pods, against the real control plane.

kwok makes every pod Ready at once, except pods annotated with
tests/cluster/simulate.py's SIMULATE_ANNOTATION: those get the status a
kubelet reports for ImagePullBackOff or CrashLoopBackOff (and its Warning
event). The engine only sees what the API server returns -- pods, events,
and the previous container log read through the API server from kwok's
kubelet API on a node at KUBELET_ADDRESS -- and must turn it into a message
that names the Deployment, the cause and the fix.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest

from cubeinstall.kube.apply import apply_objects, uninstall_stage
from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.errors import ApplyFailed
from cubeinstall.kube.support import collect
from cubeinstall.run.support_text import cluster_sections
from tests.cluster.nodes import FAKE_LOG_LINES, KUBELET_ADDRESS, FakeNode
from tests.cluster.simulate import (
    CRASH_EXIT_CODE,
    CRASH_LOOP_BACKOFF,
    CRASH_RESTARTS,
    IMAGE_PULL_BACKOFF,
    SIMULATE_ANNOTATION,
)

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(bool(os.environ.get("CUBEINSTALL_TEST_KUBECONFIG")),
                       reason="the simulated kubelet failures are the local control plane's kwok"),
]

IMAGE = "registry.example.com/team/app:1.0"
TIMEOUT = 5  # seconds per object: the pods reach their failing state within about one
LOGS_LABEL = "cubeinstall.io/test-diagnosis-logs"


@pytest.fixture
def kube(kube_cluster) -> KubeClient:
    return KubeClient(kube_cluster.api_client())


@pytest.fixture
def stage(kube) -> str:
    name = f"diagnosis-{uuid.uuid4().hex[:6]}"
    yield name
    uninstall_stage(kube, name, timeout=60)


@pytest.fixture
def log_node(kube_cluster, kube) -> FakeNode:
    """A node whose pods' logs the API server can read (kwok's kubelet API); tainted so
    no other test's pods land there."""
    node = FakeNode("diagnosis-logs", labels={LOGS_LABEL: "true"}, address=KUBELET_ADDRESS,
                    kubelet_port=kube_cluster.control_plane.kubelet_port,
                    taints=({"key": LOGS_LABEL, "value": "true", "effect": "NoSchedule"},))
    kube_cluster.add_node(node)
    yield node
    kube.delete(kube.resolve("v1", "Node"), None, node.name)


def failing_deployment(namespace: str, simulate: str, **pod_spec) -> dict:
    labels = {"app": "app"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels,
                                               "annotations": {SIMULATE_ANNOTATION: simulate}},
                                  "spec": {**pod_spec,
                                           "containers": [{"name": "app", "image": IMAGE}]}}}}


def test_image_pull_backoff_names_the_image_and_the_registry(kube, test_namespace, stage):
    objects = [failing_deployment(test_namespace, IMAGE_PULL_BACKOFF)]

    with pytest.raises(ApplyFailed) as failure:
        apply_objects(kube, stage, objects, timeout=TIMEOUT)

    message = str(failure.value)
    assert re.search(
        rf"Deployment {test_namespace}/app: pod app-[a-z0-9]+-[a-z0-9]+ cannot pull image "
        rf"{re.escape(IMAGE)} from registry registry\.example\.com "
        rf"\(ImagePullBackOff: Back-off pulling image \"{re.escape(IMAGE)}\"\)", message), message
    assert failure.value.hint == (
        "mirror the image into the site registry (stage images) or check that "
        "registry.example.com is reachable from the nodes and the pull secret is right")
    assert failure.value.targets == (f"Deployment {test_namespace}/app",)


def test_crash_loop_backoff_quotes_the_last_log_lines(kube, test_namespace, log_node, stage):
    objects = [failing_deployment(
        test_namespace, CRASH_LOOP_BACKOFF, nodeSelector={LOGS_LABEL: "true"},
        tolerations=[{"key": LOGS_LABEL, "operator": "Equal", "value": "true",
                      "effect": "NoSchedule"}])]

    with pytest.raises(ApplyFailed) as failure:
        apply_objects(kube, stage, objects, timeout=TIMEOUT)

    message = str(failure.value)
    found = re.search(rf"Deployment {test_namespace}/app: container app of pod "
                      r"(app-[a-z0-9]+-[a-z0-9]+) keeps crashing "
                      rf"\(exit code {CRASH_EXIT_CODE}, Error, {CRASH_RESTARTS} restarts\); "
                      r"last log lines:\n", message)
    assert found, message
    quoted = "\n".join(f"    | {line}" for line in FAKE_LOG_LINES)  # read via the API server
    assert message[found.end():].startswith(quoted), message
    pod = found.group(1)
    assert failure.value.hint == (f"fix the cause in the log; kubectl logs -n {test_namespace} "
                                  f"{pod} -c app --previous shows more")

    bundle = "\n".join(cluster_sections(collect(kube, stage, objects, failure.value.targets)))
    assert re.search(
        rf"    app \({re.escape(IMAGE)}\): waiting \(CrashLoopBackOff\): back-off 40s restarting "
        rf"failed container=app pod={pod}_{test_namespace}\([0-9a-f-]+\), ready=false, "
        rf"restarts={CRASH_RESTARTS}; last: terminated \(Error, exit code {CRASH_EXIT_CODE}, at ",
        bundle), bundle
    assert (f"--- pod {test_namespace}/{pod} container app (previous), last 50 lines:\n"
            + quoted) in bundle
