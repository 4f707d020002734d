"""Typed patches: tables of (objects in -> objects out); the input is never modified."""

from __future__ import annotations

import copy

import pytest

from cubeinstall.render.pull_secret import ensure_pull_secret
from cubeinstall.upstream import patches
from cubeinstall.upstream.kinds import cluster_scoped_kinds


def deployment(name="app", namespace=None, image="busybox:1.36", **spec):
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    pod = {"containers": [{"name": "main", "image": image}], **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def crb(*subjects):
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": list(subjects)}


def sa(name, namespace=None):
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, **({"namespace": namespace} if namespace else {})}}


def service(name, namespace=None):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
            "spec": {"ports": [{"port": 443}]}}


def webhook_config(service_ref, kind="ValidatingWebhookConfiguration"):
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": {"name": "hooks"},
            "webhooks": [{"name": "w.example.com", "clientConfig": {"service": service_ref}}]}


CRD_CLUSTER = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "queues.scheduling.volcano.sh"},
               "spec": {"group": "scheduling.volcano.sh", "scope": "Cluster",
                        "names": {"kind": "Queue", "plural": "queues"}}}
QUEUE = {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "Queue",
         "metadata": {"name": "default"}}


def run(function, objects, *args):
    """Call a patch and prove its input was left untouched."""
    before = copy.deepcopy(objects)
    result = function(objects, *args)
    assert objects == before, f"{function.__name__} modified its input"
    return result


# -- set_namespace ------------------------------------------------------------------------------

NAMESPACE_CASES = [
    # (objects in, expected namespaces of objects out (None: cluster-scoped), case)
    ([deployment()], ["argo"], "no namespace: set"),
    ([deployment(namespace="default")], ["argo"], "another namespace: moved"),
    ([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}], [None],
     "Namespace itself is cluster-scoped"),
    ([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
       "metadata": {"name": "r"}}], [None], "ClusterRole cluster-scoped"),
    ([{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "p"}}],
     [None], "PriorityClass cluster-scoped"),
    ([CRD_CLUSTER, QUEUE], [None, None], "a kind its CRD declares cluster-scoped"),
    ([{"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
       "metadata": {"name": "m", "namespace": "default"}}], ["argo"],
     "an unknown custom kind is namespaced"),
]


@pytest.mark.parametrize("objects, expected, case", NAMESPACE_CASES,
                         ids=[c[2] for c in NAMESPACE_CASES])
def test_set_namespace_sets_namespaced_objects_only(objects, expected, case):
    result = run(patches.set_namespace, objects, "argo")
    assert [o["metadata"].get("namespace") for o in result] == expected


SUBJECT_CASES = [
    # (objects besides the binding, subject in, subject namespace out, case)
    ([], {"kind": "ServiceAccount", "name": "argo"}, "argo", "subject without namespace"),
    ([sa("prometheus-operator", "default")],
     {"kind": "ServiceAccount", "name": "prometheus-operator", "namespace": "default"}, "argo",
     "subject naming a ServiceAccount of the set follows it"),
    ([], {"kind": "ServiceAccount", "name": "other", "namespace": "kube-system"}, "kube-system",
     "subject naming a ServiceAccount elsewhere is kept"),
    ([], {"kind": "User", "name": "alice"}, None, "users have no namespace"),
]


@pytest.mark.parametrize("extra, subject, expected, case", SUBJECT_CASES,
                         ids=[c[3] for c in SUBJECT_CASES])
def test_set_namespace_rbac_subjects(extra, subject, expected, case):
    result = run(patches.set_namespace, [*extra, crb(subject)], "argo")
    binding = result[-1]
    assert binding["subjects"][0].get("namespace") == expected
    assert "namespace" not in binding["metadata"]


def test_set_namespace_rolebinding_moves_with_its_subjects():
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "rb"}, "roleRef": {"kind": "Role", "name": "r"},
               "subjects": [{"kind": "ServiceAccount", "name": "argo"}]}
    [out] = run(patches.set_namespace, [binding], "argo")
    assert out["metadata"]["namespace"] == "argo"
    assert out["subjects"] == [{"kind": "ServiceAccount", "name": "argo", "namespace": "argo"}]


WEBHOOK_CASES = [
    ([service("training-operator")], {"name": "training-operator", "namespace": "system"},
     "kubeflow", "service of the set (kustomize base 'system'): re-pointed"),
    ([], {"name": "anything"}, "kubeflow", "no namespace: set"),
    ([], {"name": "istiod", "namespace": "istio-system"}, "istio-system",
     "a service elsewhere is kept"),
]


@pytest.mark.parametrize("extra, ref, expected, case", WEBHOOK_CASES,
                         ids=[c[3] for c in WEBHOOK_CASES])
@pytest.mark.parametrize("kind", ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"])
def test_set_namespace_webhook_service_references(extra, ref, expected, case, kind):
    result = run(patches.set_namespace, [*extra, webhook_config(ref, kind)], "kubeflow")
    config = result[-1]
    assert "namespace" not in config["metadata"]
    assert config["webhooks"][0]["clientConfig"]["service"]["namespace"] == expected


def test_set_namespace_apiservice_service():
    api = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
           "metadata": {"name": "v1beta1.metrics.k8s.io"},
           "spec": {"service": {"name": "metrics-server", "namespace": "default"}}}
    out = run(patches.set_namespace, [service("metrics-server", "default"), api], "monitoring")
    assert out[1]["spec"]["service"]["namespace"] == "monitoring"
    assert "namespace" not in out[1]["metadata"]


def test_crds_pass_through_as_the_same_object():
    out = run(patches.set_namespace, [CRD_CLUSTER], "x")
    assert out[0] is CRD_CLUSTER


def test_cluster_scoped_kinds_reads_crds_of_the_set():
    namespaced_crd = {**CRD_CLUSTER, "spec": {**CRD_CLUSTER["spec"], "scope": "Namespaced",
                                              "names": {"kind": "Job"}, "group": "batch.volcano.sh"}}
    kinds = cluster_scoped_kinds([CRD_CLUSTER, namespaced_crd])
    assert ("scheduling.volcano.sh", "Queue") in kinds
    assert ("batch.volcano.sh", "Job") not in kinds


# -- retarget_namespace_mentions ----------------------------------------------------------------

def test_retarget_namespace_mentions_in_flags_env_and_webhook_selectors():
    workload = deployment(namespace="volcano-system")
    container = pod_spec(workload)["containers"][0]
    container["args"] = ["--webhook-namespace=volcano-system", "--namespace", "volcano-system",
                         "--other=volcano-system", "--service", "volcano-system-svc", "2>&1"]
    container["command"] = ["./gen.sh", "--namespace", "volcano-system"]
    container["env"] = [{"name": "KUBE_POD_NAMESPACE", "value": "volcano-system"},
                        {"name": "RELEASE", "value": "volcano-system"}]
    hook = webhook_config({"name": "s", "namespace": "volcano-system"})
    hook["webhooks"][0]["namespaceSelector"] = {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
         "values": ["volcano-system", "kube-system"]},
        {"key": "team", "operator": "NotIn", "values": ["volcano-system"]}]}

    out_workload, out_hook = run(patches.retarget_namespace_mentions, [workload, hook],
                                 "volcano-system", "kubeflow")
    out = pod_spec(out_workload)["containers"][0]
    assert out["args"] == ["--webhook-namespace=kubeflow", "--namespace", "kubeflow",
                           "--other=volcano-system", "--service", "volcano-system-svc", "2>&1"]
    assert out["command"] == ["./gen.sh", "--namespace", "kubeflow"]
    assert out["env"] == [{"name": "KUBE_POD_NAMESPACE", "value": "kubeflow"},
                          {"name": "RELEASE", "value": "volcano-system"}]
    expressions = out_hook["webhooks"][0]["namespaceSelector"]["matchExpressions"]
    assert expressions[0]["values"] == ["kubeflow", "kube-system"]
    assert expressions[1]["values"] == ["volcano-system"]  # another key: not a namespace name
    assert out_workload["metadata"]["namespace"] == "volcano-system"  # set_namespace's job


# -- pin_images ------------------------------------------------------------------------------------

PIN_CASES = [
    ("quay.io/argoproj/argocli:latest", "quay.io/argoproj/argocli:v4.1.2", "latest -> pinned"),
    ("ghcr.io/kubeflow/training-v1/training-operator",
     "ghcr.io/kubeflow/training-v1/training-operator:v1-93c5489", "untagged -> pinned"),
    ("frameworkcontroller/frameworkcontroller",
     "docker.io/frameworkcontroller/frameworkcontroller:v1.0.0", "Docker Hub short name"),
    ("quay.io/argoproj/argocli:v4.1.2", "quay.io/argoproj/argocli:v4.1.2", "already pinned"),
    ("quay.io/argoproj/argocli@sha256:" + "a" * 64, "quay.io/argoproj/argocli@sha256:" + "a" * 64,
     "digest kept"),
    ("busybox:latest", "busybox:latest", "not pinned: untouched"),
]
PINS = {"quay.io/argoproj/argocli": "v4.1.2",
        "ghcr.io/kubeflow/training-v1/training-operator": "v1-93c5489",
        "docker.io/frameworkcontroller/frameworkcontroller": "v1.0.0",
        "quay.io/argoproj/argoexec": "v4.1.2"}


@pytest.mark.parametrize("image, expected, case", PIN_CASES, ids=[c[2] for c in PIN_CASES])
def test_pin_images(image, expected, case):
    [out] = run(patches.pin_images, [deployment(image=image)], PINS)
    assert pod_spec(out)["containers"][0]["image"] == expected


def test_pin_images_reaches_init_containers_and_image_flags():
    obj = deployment(image="quay.io/argoproj/workflow-controller:latest")
    spec = pod_spec(obj)
    spec["initContainers"] = [{"name": "init", "image": "quay.io/argoproj/argocli"}]
    spec["containers"][0]["args"] = ["--executor-image", "quay.io/argoproj/argoexec:latest"]
    [out] = run(patches.pin_images, [obj], PINS)
    assert pod_spec(out)["initContainers"][0]["image"] == "quay.io/argoproj/argocli:v4.1.2"
    assert pod_spec(out)["containers"][0]["args"] == [
        "--executor-image", "quay.io/argoproj/argoexec:v4.1.2"]


# -- pull secrets, pull policy, placement ---------------------------------------------------------

WORKLOADS = [
    deployment(),
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
     "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}},
    {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
     "spec": {"jobTemplate": {"spec": {"template": {"spec": {
         "containers": [{"name": "c", "image": "x"}]}}}}}},
    {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
     "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}},
]


def spec_of(obj):
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("workload", WORKLOADS, ids=[w["kind"] for w in WORKLOADS])
def test_ensure_pull_secret_once(workload):
    [out] = run(ensure_pull_secret, [workload])
    assert spec_of(out)["imagePullSecrets"] == [{"name": "hubsecret"}]
    [again] = ensure_pull_secret([out])
    assert spec_of(again)["imagePullSecrets"] == [{"name": "hubsecret"}]


def test_ensure_pull_secret_keeps_others_and_ignores_non_workloads():
    obj = deployment(imagePullSecrets=[{"name": "other"}])
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
              "data": {"containers": "not a pod"}}
    out, out_config = run(ensure_pull_secret, [obj, config])
    assert pod_spec(out)["imagePullSecrets"] == [{"name": "other"}, {"name": "hubsecret"}]
    assert out_config == config


@pytest.mark.parametrize("before", [None, "Always", "Never"])
def test_set_pull_policy_every_container(before):
    obj = deployment()
    spec = pod_spec(obj)
    spec["initContainers"] = [{"name": "i", "image": "x"}]
    if before:
        spec["containers"][0]["imagePullPolicy"] = before
    [out] = run(patches.set_pull_policy, [obj])
    every = pod_spec(out)["initContainers"] + pod_spec(out)["containers"]
    assert [c["imagePullPolicy"] for c in every] == ["IfNotPresent", "IfNotPresent"]


PLACEMENT_CASES = [
    (deployment(), {"kubeflow": "true"}, "no selector"),
    (deployment(nodeSelector={"kubernetes.io/os": "linux"}),
     {"kubernetes.io/os": "linux", "kubeflow": "true"}, "existing selector kept"),
    (deployment(nodeSelector={"kubeflow": "false"}), {"kubeflow": "true"}, "label overridden"),
]


@pytest.mark.parametrize("obj, expected, case", PLACEMENT_CASES, ids=[c[2] for c in PLACEMENT_CASES])
def test_place_on(obj, expected, case):
    [out] = run(patches.place_on, [obj], "kubeflow")
    assert pod_spec(out)["nodeSelector"] == expected


def test_place_on_leaves_daemonsets_and_non_workloads():
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                 "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    out_ds, out_queue = run(patches.place_on, [daemonset, QUEUE], "kubeflow")
    assert "nodeSelector" not in spec_of(out_ds)
    assert out_queue == QUEUE
