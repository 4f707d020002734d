"""Apply order: phases by kind, custom resources last, deletion reversed."""

from cubeinstall.kube.order import PHASES, by_phase, deletion_order, phase_of


def obj(api_version, kind, name="x"):
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}


def test_phases_follow_the_documented_order():
    objects = [
        obj("example.com/v1", "Widget"),
        obj("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
        obj("apps/v1", "Deployment"),
        obj("v1", "Service"),
        obj("v1", "PersistentVolumeClaim"),
        obj("v1", "ConfigMap"),
        obj("rbac.authorization.k8s.io/v1", "ClusterRole"),
        obj("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        obj("v1", "Namespace"),
    ]
    assert [phase for phase, _ in by_phase(objects)] == [
        "namespaces", "crds", "cluster-rbac", "config", "storage", "services", "workloads",
        "webhooks", "custom-resources"]


def test_kind_is_matched_with_its_group():
    # knative's Service is a custom resource, not a core Service
    assert PHASES[phase_of(obj("serving.knative.dev/v1", "Service"))] == "custom-resources"
    assert PHASES[phase_of(obj("v1", "Service"))] == "services"


def test_input_order_is_kept_inside_a_phase():
    objects = [obj("v1", "ConfigMap", "b"), obj("v1", "Secret", "a"), obj("v1", "ConfigMap", "c")]
    [(phase, items)] = by_phase(objects)
    assert phase == "config"
    assert [o["metadata"]["name"] for o in items] == ["b", "a", "c"]


def test_deletion_is_the_reverse():
    objects = [obj("v1", "Namespace"), obj("example.com/v1", "Widget"),
               obj("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
               obj("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
               obj("apps/v1", "Deployment"), obj("rbac.authorization.k8s.io/v1", "Role")]
    assert [phase for phase, _ in deletion_order(objects)] == [
        "custom-resources", "webhooks", "workloads", "config", "crds", "namespaces"]
