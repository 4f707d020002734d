"""Diagnosis from recorded pods and events: names the object, the cause and the fix."""

from cubeinstall.kube.diagnose import containers_needing_logs, diagnose, image_registry

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "mysql", "namespace": "infra"}}


def pod(name="mysql-7d9f-abcde", *, node_selector=None, conditions=(), statuses=(), image="x"):
    return {"metadata": {"name": name, "namespace": "infra"},
            "spec": {"nodeSelector": node_selector or {},
                     "containers": [{"name": "mysql", "image": image}]},
            "status": {"phase": "Pending", "conditions": list(conditions),
                       "containerStatuses": list(statuses)}}


UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node "
                            "affinity/selector. preemption: 0/3 nodes are available: 3 "
                            "Preemption is not helpful for scheduling."}


def test_unmatched_node_selector_of_a_role_says_which_role_to_give():
    found = diagnose(DEPLOYMENT, "0/1 replicas available",
                     [pod(node_selector={"mysql": "true"}, conditions=[UNSCHEDULABLE])], [])
    assert found.message == "Deployment infra/mysql: 0/3 nodes match node selector mysql=true"
    assert found.hint == "label a node with role mysql in site.yaml (nodes[].roles)"


def test_unmatched_custom_label_says_which_label_to_add():
    found = diagnose(DEPLOYMENT, "", [pod(node_selector={"disk": "ssd"},
                                          conditions=[UNSCHEDULABLE])], [])
    assert "node selector disk=ssd" in found.message
    assert "add label disk=ssd to a node" in found.hint


def test_insufficient_resources():
    condition = dict(UNSCHEDULABLE, message="0/2 nodes are available: 2 Insufficient "
                                            "nvidia.com/gpu. preemption: not helpful")
    found = diagnose(DEPLOYMENT, "", [pod(conditions=[condition])], [])
    assert "not enough nvidia.com/gpu" in found.message and "2 nodes" in found.message


def test_image_pull_backoff_names_image_and_registry():
    status = {"name": "mysql", "restartCount": 0, "state": {"waiting": {
        "reason": "ImagePullBackOff",
        "message": "Back-off pulling image \"harbor.example.com/cube/mysql:8\""}}}
    found = diagnose(DEPLOYMENT, "", [pod(statuses=[status],
                                          image="harbor.example.com/cube/mysql:8")], [])
    assert "cannot pull image harbor.example.com/cube/mysql:8" in found.message
    assert "registry harbor.example.com" in found.message
    assert found.message.startswith("Deployment infra/mysql: pod mysql-7d9f-abcde")


def test_crash_loop_quotes_the_last_log_lines():
    status = {"name": "mysql", "restartCount": 5,
              "state": {"waiting": {"reason": "CrashLoopBackOff"}},
              "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}
    pods = [pod(statuses=[status])]
    assert containers_needing_logs(pods) == [("mysql-7d9f-abcde", "mysql", True)]
    log = "\n".join(f"line {i}" for i in range(30)) + "\nERROR: unknown variable 'foo'"
    found = diagnose(DEPLOYMENT, "", pods, [], {("mysql-7d9f-abcde", "mysql"): log})
    assert "keeps crashing (exit code 1, Error, 5 restarts)" in found.message
    assert "| ERROR: unknown variable 'foo'" in found.message
    assert "line 20" not in found.message  # only the tail


def test_no_pods_falls_back_to_warning_events_of_its_replicasets():
    events = [{"type": "Warning", "reason": "FailedCreate", "lastTimestamp": "2026-01-01T00:00:01Z",
               "involvedObject": {"name": "mysql-7d9f"},
               "message": "pods \"mysql-7d9f-\" is forbidden: exceeded quota: compute"},
              {"type": "Warning", "reason": "Other", "involvedObject": {"name": "unrelated"},
               "message": "not about us"}]
    found = diagnose(DEPLOYMENT, "0/1 replicas available", [], events, owned_names={"mysql-7d9f"})
    assert found.message == ("Deployment infra/mysql: 0/1 replicas available; events: "
                             "FailedCreate: pods \"mysql-7d9f-\" is forbidden: exceeded quota: "
                             "compute")


def test_image_registry():
    assert image_registry("nginx") == "docker.io"
    assert image_registry("volcanosh/vc-scheduler:v1") == "docker.io"
    assert image_registry("quay.io/prometheus/prometheus") == "quay.io"
    assert image_registry("10.0.0.5:5000/cube/app") == "10.0.0.5:5000"
