"""Readiness rules per kind: (object) -> done, ok, message."""

import pytest

from cubeinstall.kube.readiness import readiness


def deployment(replicas=3, generation=2, observed=2, updated=3, current=3, available=3,
               conditions=()):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "infra", "generation": generation},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated,
                       "replicas": current, "availableReplicas": available,
                       "conditions": list(conditions)}}


@pytest.mark.parametrize("obj, done, ok, words", [
    (deployment(), True, True, ""),
    (deployment(observed=1), False, False, "controller"),
    (deployment(updated=1, current=3, available=1), False, False, "1/3 replicas updated"),
    (deployment(current=4), False, False, "old replicas"),
    (deployment(available=2), False, False, "2/3 replicas available"),
    (deployment(available=0, conditions=[{"type": "Progressing", "status": "False",
                                          "reason": "ProgressDeadlineExceeded",
                                          "message": "ReplicaSet web-1 has timed out"}]),
     True, False, "progress deadline"),
])
def test_deployment(obj, done, ok, words):
    state = readiness(obj)
    assert (state.done, state.ok) == (done, ok)
    assert words in state.message


def test_statefulset_waits_for_ready_and_revision():
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"generation": 1}, "spec": {"replicas": 2},
           "status": {"observedGeneration": 1, "readyReplicas": 1, "currentRevision": "a",
                      "updateRevision": "a"}}
    assert readiness(sts).message == "1/2 replicas ready"
    sts["status"].update(readyReplicas=2, updateRevision="b", updatedReplicas=1)
    assert not readiness(sts).done
    sts["status"]["currentRevision"] = "b"
    assert readiness(sts).ok


def test_daemonset_with_no_matching_node_is_done():
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1},
          "status": {"observedGeneration": 1, "desiredNumberScheduled": 0}}
    assert readiness(ds).ok
    ds["status"].update(desiredNumberScheduled=3, updatedNumberScheduled=3, numberAvailable=2)
    assert readiness(ds).message == "2/3 pods available"


def test_job_failure_is_done_and_not_ok():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {},
           "status": {"conditions": [{"type": "Failed", "status": "True",
                                      "reason": "BackoffLimitExceeded",
                                      "message": "Job has reached the specified backoff limit"}]}}
    state = readiness(job)
    assert state.done and not state.ok
    assert "BackoffLimitExceeded" in state.message
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert readiness(job).ok


def test_pvc_crd_apiservice():
    assert not readiness({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "status": {"phase": "Pending"}}).done
    assert readiness({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                      "status": {"phase": "Bound"}}).ok
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "status": {"conditions": [{"type": "Established", "status": "True"}]}}
    assert not readiness(crd).done  # NamesAccepted still missing
    crd["status"]["conditions"].append({"type": "NamesAccepted", "status": "True"})
    assert readiness(crd).ok
    crd["status"]["conditions"][1] = {"type": "NamesAccepted", "status": "False",
                                      "message": "\"widgets\" is already in use"}
    assert readiness(crd).done and not readiness(crd).ok
    api = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
           "status": {"conditions": [{"type": "Available", "status": "False",
                                      "reason": "MissingEndpoints"}]}}
    assert "MissingEndpoints" in readiness(api).message


def test_kinds_without_a_rule_are_ready():
    assert readiness({"apiVersion": "v1", "kind": "ConfigMap"}).ok
    assert readiness({"apiVersion": "example.com/v1", "kind": "Widget"}).ok
