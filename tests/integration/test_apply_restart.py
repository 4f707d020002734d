"""An apply that loses its API server half-way (killed, restarted) still completes.

Runs on a control plane of its own: killing the shared session cluster's
apiserver would disturb every other test.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from cubeinstall.kube.apply import apply_objects
from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.errors import KubeError
from cubeinstall.kube.objects import STAGE_LABEL
from tests.cluster.controlplane import ControlPlane
from tests.cluster.processes import ManagedProcess

pytestmark = pytest.mark.cluster

CONFIGMAPS = 600
DOWN_SECONDS = 3.0


@pytest.fixture
def own_cluster(tmp_path):
    control_plane = ControlPlane(tmp_path / "cluster")
    try:
        control_plane.start()
    except Exception as exc:  # noqa: BLE001 - a cluster that cannot start fails the test
        pytest.fail(f"the local control plane did not start:\n{exc}", pytrace=False)
    try:
        yield control_plane
    finally:
        control_plane.stop()


def restart_apiserver(control_plane: ControlPlane, down_for: float) -> None:
    """SIGKILL kube-apiserver, wait, start it again with the same command line."""
    index, proc = next((i, p) for i, p in enumerate(control_plane.processes)
                       if p.name == "kube-apiserver")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.popen.wait(10)
    time.sleep(down_for)
    control_plane.processes[index] = ManagedProcess(proc.name, proc.argv, proc.log_path,
                                                    env=proc.env).start()


def test_apply_completes_across_an_apiserver_restart(own_cluster):
    namespace, stage = "restart", "restart-test"
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    objects += [{"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"cm-{i:03d}", "namespace": namespace},
                 "data": {"index": str(i), "payload": "x" * 2000}} for i in range(CONFIGMAPS)]
    objects += [{"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": f"web-{i}", "namespace": namespace},
                 "spec": {"replicas": 2, "selector": {"matchLabels": {"app": f"web-{i}"}},
                          "template": {"metadata": {"labels": {"app": f"web-{i}"}},
                                       "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
                for i in range(3)]
    watcher = KubeClient.from_kubeconfig(own_cluster.kubeconfig)
    configmaps = watcher.resolve("v1", "ConfigMap")
    kube = KubeClient.from_kubeconfig(own_cluster.kubeconfig)
    outcome: dict = {}

    def run_apply() -> None:
        try:
            outcome["changes"] = apply_objects(kube, stage, objects, timeout=120)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            outcome["error"] = exc
        outcome["finished"] = time.monotonic()

    # The apply runs in a thread; the restart happens here, in the main thread: the
    # components die with the thread that started them (PR_SET_PDEATHSIG).
    applier = threading.Thread(target=run_apply)
    applier.start()
    before_kill = 0
    deadline = time.monotonic() + 60
    while not before_kill and time.monotonic() < deadline:
        try:
            before_kill = len(watcher.list(configmaps, namespace, label_selector=STAGE_LABEL))
        except KubeError:
            pass
        time.sleep(0.01)
    restart_apiserver(own_cluster, DOWN_SECONDS)
    restarted_at = time.monotonic()
    applier.join(timeout=300)
    assert not applier.is_alive(), "the apply did not finish within 300 s of the restart"
    if "error" in outcome:
        raise outcome["error"]
    changes = outcome["changes"]

    assert 0 < before_kill < CONFIGMAPS, "the apiserver was not killed mid-apply"
    assert outcome["finished"] > restarted_at
    assert [c.action for c in changes] == ["create"] * len(objects)
    assert len(watcher.list(configmaps, namespace, label_selector=f"cubeinstall.io/stage={stage}")
               ) == CONFIGMAPS
    deployments = watcher.list(watcher.resolve("apps/v1", "Deployment"), namespace)
    assert [d["status"].get("availableReplicas") for d in deployments] == [2, 2, 2]
    assert {c.action for c in apply_objects(kube, stage, objects)} == {"unchanged"}
