"""The failure support bundle: its text from fixed objects, the file, the runner's wiring.

The cluster collection against a real control plane is in
tests/integration/test_support_bundle.py; here: formatting (Secrets show keys
only, managedFields and last-applied go, events sorted, logs quoted, what
could not be collected said), the file (name, mode 0600, no overwrite, kept
count), a node stage's bundle, a write failure that never masks the stage's
error, and a collection that gives up on a hung API server within its budget.
"""

from __future__ import annotations

import base64
import io
import re
import socket
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import StageFailed
from cubeinstall.core.output import Output
from cubeinstall.kube.support import ClusterState, ContainerLog
from cubeinstall.run.support_bundle import KEEP, header, write_bundle, write_for_failure
from cubeinstall.run.support_text import cluster_sections, describe
from cubeinstall.site import stages as registry
from cubeinstall.site.loader import load_site
from cubeinstall.stages.contract import StageCode
from tests.helpers import EXAMPLE_SITE, json_events, run_cli

UNREGISTERED_VALUE = "plain-value-no-redaction-knows"  # proves "keys only", not masking
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "mysql", "namespace": "infra", "generation": 2,
                 "managedFields": [{"manager": "cubeinstall", "fieldsV1": {"f:spec": {}}}],
                 "annotations": {LAST_APPLIED: '{"copy": "of everything"}', "keep": "me"}},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "mysql"}},
             "template": {"spec": {"nodeSelector": {"mysql": "true"}}}},
    "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
               "unavailableReplicas": 1,
               "conditions": [{"type": "Available", "status": "False",
                               "reason": "MinimumReplicasUnavailable"}]},
}
SECRET = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
          "metadata": {"name": "mysql-root", "namespace": "infra",
                       "annotations": {LAST_APPLIED: UNREGISTERED_VALUE}},
          "data": {"password": base64.b64encode(UNREGISTERED_VALUE.encode()).decode()},
          "stringData": {"user": UNREGISTERED_VALUE}}
PENDING = {
    "metadata": {"name": "mysql-7d9f-abcde", "namespace": "infra",
                 "ownerReferences": [{"kind": "ReplicaSet", "name": "mysql-7d9f"}]},
    "spec": {"containers": [{"name": "mysql", "image": "harbor.example.com/mysql:8.0"}]},
    "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}]},
}
CRASHING = {
    "metadata": {"name": "cube-0", "namespace": "infra"},
    "spec": {"nodeName": "node1",
             "initContainers": [{"name": "wait-db", "image": "busybox"}],
             "containers": [{"name": "app", "image": "cube:1"}]},
    "status": {"phase": "Running",
               "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
               "initContainerStatuses": [{"name": "wait-db", "ready": True, "restartCount": 0,
                                          "state": {"terminated": {"reason": "Completed",
                                                                   "exitCode": 0}}}],
               "containerStatuses": [{"name": "app", "ready": False, "restartCount": 4,
                                      "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                            "message": "back-off 1m20s"}},
                                      "lastState": {"terminated": {"reason": "Error",
                                                                   "exitCode": 3}}}]},
}
EVENTS = [  # out of order; one from events.k8s.io (eventTime, series), one core v1
    {"type": "Warning", "reason": "BackOff", "message": "Back-off restarting\nfailed container",
     "involvedObject": {"kind": "Pod", "namespace": "infra", "name": "cube-0"},
     "eventTime": "2026-03-01T10:00:09.000000Z",
     "series": {"count": 7, "lastObservedTime": "2026-03-01T10:05:00.000000Z"}},
    {"type": "Warning", "reason": "FailedScheduling", "count": 3,
     "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
     "involvedObject": {"kind": "Pod", "namespace": "infra", "name": "mysql-7d9f-abcde"},
     "lastTimestamp": "2026-03-01T10:01:00Z"},
]


def fixed_state() -> ClusterState:
    return ClusterState(
        server="https://127.0.0.1:6443",
        not_ready=[(DEPLOYMENT, "0/1 replicas available"),
                   (SECRET, "ready now, but named in the failure")],
        ready=["Service infra/mysql"], absent=["ConfigMap infra/mysql-config"],
        pods=[PENDING, CRASHING],
        logs=[ContainerLog("infra/mysql-7d9f-abcde", "", missing="the pod is not scheduled on a node"),
              ContainerLog("infra/cube-0", "wait-db", text="waiting for mysql\n"),
              ContainerLog("infra/cube-0", "app", text="starting\nno database\n"),
              ContainerLog("infra/cube-0", "app", previous=True, text="starting\npanic: x\n"),
              ContainerLog("infra/cube-1", "app", missing="dial tcp 127.0.10.11:10250: refused")],
        events=EVENTS, missing=["listing the stage's Job objects: forbidden"])


def test_cluster_text_from_fixed_objects():
    text = "\n".join(cluster_sections(fixed_state()))

    assert "== could not be collected\n- listing the stage's Job objects: forbidden" in text
    assert "--- Deployment infra/mysql: 0/1 replicas available\n" in text
    assert "MinimumReplicasUnavailable" in text and "keep: me" in text
    assert "managedFields" not in text and LAST_APPLIED not in text
    assert "--- Secret infra/mysql-root: ready now, but named in the failure" in text
    assert "- password\n" in text and "- user\n" in text
    assert UNREGISTERED_VALUE not in text
    assert base64.b64encode(UNREGISTERED_VALUE.encode()).decode() not in text
    assert "== rendered but not in the cluster\n- ConfigMap infra/mysql-config" in text
    assert "== ready objects of the stage\n- Service infra/mysql" in text

    assert ("--- Pod infra/mysql-7d9f-abcde: phase Pending, node (none), owned by ReplicaSet "
            "mysql-7d9f") in text
    assert "PodScheduled=False  Unschedulable: 0/3 nodes are available" in text
    assert "mysql (harbor.example.com/mysql:8.0): no status yet" in text
    assert ("app (cube:1): waiting (CrashLoopBackOff): back-off 1m20s, ready=false, restarts=4; "
            "last: terminated (Error, exit code 3") in text
    assert "init wait-db (busybox): terminated (Completed, exit code 0" in text

    assert "--- pod infra/mysql-7d9f-abcde: no log: the pod is not scheduled on a node" in text
    assert ("--- pod infra/cube-0 container app (previous), last 50 lines:\n"
            "    | starting\n    | panic: x") in text
    assert "--- pod infra/cube-0 container app (current), last 50 lines:" in text
    assert ("--- pod infra/cube-1 container app (current): no log: dial tcp 127.0.10.11:10250: "
            "refused") in text

    table = text.split("== events of the stage's namespaces and objects (2, oldest first)\n")[1]
    table = table.splitlines()
    assert table[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"]
    assert table[1].split()[:6] == ["2026-03-01T10:01:00Z", "Warning", "FailedScheduling", "Pod",
                                    "infra/mysql-7d9f-abcde", "3"]
    assert table[2].split()[:6] == ["2026-03-01T10:05:00.000000Z", "Warning", "BackOff", "Pod",
                                    "infra/cube-0", "7"]
    assert table[2].endswith("Back-off restarting failed container")


def test_long_spec_is_summarised_and_status_kept():
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "big.example.com"},
           "spec": {"group": "example.com", "versions": [{"name": f"v{i}"} for i in range(500)]},
           "status": {"conditions": [{"type": "NamesAccepted", "status": "False"}]}}
    shown = describe(crd)
    assert shown["spec"] == {"(summary)": "502 lines left out; fields: group, versions"}
    assert shown["status"] == crd["status"]
    assert describe(DEPLOYMENT)["spec"] == DEPLOYMENT["spec"]  # short: whole


def test_empty_state_says_none():
    text = "\n".join(cluster_sections(ClusterState(server="https://x")))
    assert "== objects of the stage that are not ready (0)\n(none)" in text
    assert "could not be collected" not in text


def test_header_names_site_stage_version_time_failure_and_hint():
    failure = StageFailed("redis", "1 object(s) not ready after 5s", hint="label a node")
    text = header("demo-bj", "redis", failure, datetime(2026, 3, 1, 10, 0, 5, tzinfo=timezone.utc))
    assert text.startswith("cubeinstall support bundle\nsite:     demo-bj\nstage:    redis\n")
    assert re.search(r"^version:  cubeinstall \d", text, re.MULTILINE)
    assert "time:     2026-03-01T10:00:05Z" in text
    assert "== failure\nstage redis: 1 object(s) not ready after 5s\nhint: label a node" in text


def test_file_name_mode_no_overwrite_and_kept_count(tmp_path):
    now = datetime(2026, 3, 1, 10, 0, 5, tzinfo=timezone.utc)
    first = write_bundle(tmp_path / "support", "demo", "prometheus", "one", now)
    second = write_bundle(tmp_path / "support", "demo", "prometheus", "two", now)
    assert first.name == "demo-prometheus-20260301T100005.txt"
    assert second.name == "demo-prometheus-20260301T100005-2.txt"
    assert first.read_text() == "one" and second.read_text() == "two"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "support").stat().st_mode) == 0o700

    other = write_bundle(tmp_path / "support", "demo", "prometheus-objects", "x", now)
    for second_of_day in range(KEEP + 3):
        write_bundle(tmp_path / "support", "demo", "prometheus", "later",
                     now.replace(hour=11, second=second_of_day))
    kept = sorted(p.name for p in (tmp_path / "support").glob("demo-prometheus-2*.txt"))
    assert len(kept) == KEEP and kept[-1] == f"demo-prometheus-20260301T1100{KEEP + 2:02d}.txt"
    assert other.exists()  # another stage's files are not counted nor removed


@pytest.fixture
def ctx(tmp_path, monkeypatch) -> RunContext:
    monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path / "state"))
    return RunContext(load_site(EXAMPLE_SITE), Output(json_mode=True, stream=io.StringIO()))


def test_node_stage_bundle_holds_the_error_host_results_and_warnings(ctx):
    password = ctx.site.storage.secret.reveal()  # a site Secret: registered for redaction
    failure = StageFailed("storage", f"1 of 2 hosts failed:\n  - node2: mount refused key {password}",
                          hint="fix node2")
    failure.changes = [Change("node1: /etc/fstab", "update", "cephfs at /data/k8s")]
    ctx.out.warn("node1: /data/k8s was not empty", stage="storage", host="node1")

    path = write_for_failure(ctx, registry.get("storage"), failure, objects=None)

    text = Path(path).read_text()
    assert "- node2: mount refused key ****" in text and password not in text
    assert "== what the stage did on the hosts that did not fail\n- update    node1: /etc/fstab" \
           "  (cephfs at /data/k8s)" in text
    assert "== warnings the stage reported\n- node1: /data/k8s was not empty" in text
    assert "not collected: the stage works on the hosts over SSH and has no Kubernetes objects" \
           in text


def test_a_bundle_that_cannot_be_written_is_a_warning(ctx, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path / "file" / "state"))
    failure = StageFailed("storage", "mount failed")
    assert write_for_failure(ctx, registry.get("storage"), failure, objects=None) is None
    [warning] = [e for e in ctx.out.events if e["event"] == "warning"]
    assert warning["message"].startswith("could not write the support bundle of stage storage: ")


def test_failed_stage_prints_the_bundle_path_and_puts_it_in_the_json_event(tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path / "state"))

    def failing(code, ctx, objects=None):
        raise StageFailed(code.stage.name, "host node2: connection refused", hint="check sshd")

    monkeypatch.setattr(StageCode, "apply", failing)
    code, out, _ = run_cli(["--json", "stage", "node-prep", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 1
    events = json_events(out)
    [failed] = [e for e in events if e["event"] == "stage-failed"]
    path = failed["support_bundle"]
    assert path.startswith(str(tmp_path / "state" / "support" / "demo-bj-node-prep-"))
    assert "host node2: connection refused" in Path(path).read_text()
    assert events[-1]["event"] == "error" and f"support bundle: {path}" in events[-1]["message"]

    code, _, err = run_cli(["--no-color", "stage", "node-prep", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 1
    printed = re.search(r"support bundle: (\S+)", err)
    assert printed and printed.group(1) != path and Path(printed.group(1)).read_text()


def test_dry_run_failure_writes_no_bundle(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path / "state"))

    def failing(code, ctx, objects=None):
        raise StageFailed(code.stage.name, "cannot plan")

    monkeypatch.setattr(StageCode, "plan", failing)
    code, out, _ = run_cli(["--json", "stage", "node-prep", "--dry-run", "-c", str(EXAMPLE_SITE)],
                           capsys)
    assert code == 1
    [failed] = [e for e in json_events(out) if e["event"] == "stage-failed"]
    assert failed["support_bundle"] is None
    assert not (tmp_path / "state" / "support").exists()


def test_collection_gives_up_on_a_hung_api_server_within_its_budget(tmp_path):
    """A server that accepts connections and never answers (the TLS hello included)."""
    from cubeinstall.kube.client import KubeClient
    from cubeinstall.kube.support import collect

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: hung\n"
            f"clusters: [{{name: hung, cluster: {{server: 'https://127.0.0.1:{hung.getsockname()[1]}',"
            " insecure-skip-tls-verify: true}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
            "contexts: [{name: hung, context: {cluster: hung, user: u}}]\n")
        started = time.monotonic()
        state = collect(KubeClient.from_kubeconfig(kubeconfig), "redis", [DEPLOYMENT], budget=1.5)
        elapsed = time.monotonic() - started
    assert elapsed < 3, elapsed
    assert state.missing == [("collection stopped at its 1.5s budget while finding the API of "
                              "Deployment (apps/v1): that and every later step were not collected")]
