"""adopt's pure rules: field ownership moved like csaupgrade, a decision per object, data
never at risk, controllers found before anything is applied, immutable fields named."""

from __future__ import annotations

import json

import pytest

from cubeinstall.kube import controllers, ownership, takeover
from cubeinstall.kube.errors import from_status
from cubeinstall.kube.failures import object_failure
from cubeinstall.kube.immutable import immutable_fields
from cubeinstall.site.model import Component

KUBECTL_FIELDS = {"f:metadata": {"f:annotations": {".": {}, f"f:{ownership.LAST_APPLIED}": {}}},
                  "f:spec": {"f:template": {"f:spec": {"f:containers": {
                      'k:{"name":"watch"}': {".": {}, "f:image": {}, "f:name": {}},
                      'k:{"name":"old"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}


def deployment(entries: list[dict], **meta) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "watch", "namespace": "infra", "resourceVersion": "42",
                         "managedFields": entries, **meta}}


def entry(manager: str, fields: dict, operation: str = "Update", **extra) -> dict:
    return {"manager": manager, "operation": operation, "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": fields, "time": "2026-01-01T00:00:00Z", **extra}


def test_kubectl_fields_become_one_apply_entry_of_ours_guarded_by_resource_version():
    status = entry("kube-controller-manager", {"f:status": {"f:replicas": {}}}, subresource="status")
    obj = deployment([entry("kubectl-client-side-apply", KUBECTL_FIELDS),
                      entry("kubectl-edit", {"f:spec": {"f:replicas": {}}}), status])
    assert ownership.kubectl_managers(obj) == ["kubectl-client-side-apply", "kubectl-edit"]
    replace, version = ownership.transfer_patch(obj)
    assert version == {"op": "replace", "path": "/metadata/resourceVersion", "value": "42"}
    ours, kept = replace["value"]
    assert (ours["manager"], ours["operation"], ours["apiVersion"]) == ("cubeinstall", "Apply",
                                                                        "apps/v1")
    assert ours["fieldsV1"]["f:spec"]["f:replicas"] == {}  # both kubectl entries folded in
    containers = ours["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert 'k:{"name":"old"}' in containers
    assert kept == status  # a controller's status entry stays its own


def test_nothing_to_transfer_when_kubectl_owns_nothing():
    obj = deployment([entry("helm", KUBECTL_FIELDS)])
    assert ownership.transfer_patch(obj) is None and not ownership.written_by_kubectl(obj)
    annotated = deployment([], annotations={ownership.LAST_APPLIED: "{}"})
    assert ownership.written_by_kubectl(annotated)


def test_what_the_next_apply_removes_is_what_only_kubectl_held():
    live = deployment([entry("kubectl-client-side-apply", KUBECTL_FIELDS)])
    ours = {"f:metadata": {"f:annotations": {"f:cubeinstall.io/applied-digest": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {
                'k:{"name":"watch"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}
    result = deployment([entry("cubeinstall", ours, operation="Apply")])
    # the old container goes; the annotations map stays (we hold a key of it), and the
    # last-applied annotation going is bookkeeping, not news
    assert ownership.removed_by_next_apply(live, result) == [
        "spec.template.spec.containers[name=old]"]


def test_a_field_another_manager_holds_is_not_removed():
    live = deployment([entry("kubectl-create", KUBECTL_FIELDS),
                       entry("istio-sidecar", {"f:spec": {"f:template": {"f:spec": {
                           "f:containers": {'k:{"name":"old"}': {
                               ".": {}, "f:image": {}, "f:name": {}}}}}}})])
    ours = {"f:metadata": {"f:annotations": {"f:cubeinstall.io/applied-digest": {}}}}
    result = deployment([entry("cubeinstall", ours, operation="Apply")])
    assert ownership.removed_by_next_apply(live, result) == [
        "spec.template.spec.containers[name=watch]"]


def pv(name: str, path: str, claim_ns: str = "infra", phase: str = "Bound",
       policy: str = "Retain") -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"hostPath": {"path": path}, "persistentVolumeReclaimPolicy": policy,
                     "claimRef": {"namespace": claim_ns, "name": "data"}},
            "status": {"phase": phase}}


def test_decisions_for_rendered_objects():
    live = deployment([])
    assert takeover.for_rendered("cube", live, changed=False).action == "take-over"
    changed = takeover.for_rendered("cube", live, changed=False, removed=["spec.x"])
    assert changed.action == "take-over-with-changes" and "spec.x" in changed.reason
    recreate = takeover.for_rendered("cube", live, changed=True, immutable=["spec.selector"])
    assert recreate.action == "re-create" and recreate.fields == ("spec.selector",)
    assert "pods are replaced" in recreate.reason
    merged = takeover.for_rendered("cube", live, changed=True,
                                   merge_refused="env[0].valueFrom: may not be specified")
    assert merged.action == "take-over-with-changes" and "valueFrom" in merged.reason


@pytest.mark.parametrize("phase, policy, action", [
    ("Bound", "Retain", "refuse"), ("Released", "Delete", "refuse"),
    ("Released", "Retain", "re-create")])
def test_a_volume_is_re_created_only_when_released_and_retained(phase, policy, action):
    decision = takeover.for_rendered("pv-pvc", pv("v", "/data", phase=phase, policy=policy),
                                     changed=True, immutable=["spec.persistentvolumesource"])
    assert decision.action == action
    if action == "refuse":
        assert f"the volume is {phase} (reclaimPolicy {policy})" in decision.reason


def test_a_claim_is_never_re_created():
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "data", "namespace": "infra"}}
    decision = takeover.for_rendered("pv-pvc", claim, changed=True, immutable=["spec"])
    assert decision.action == "refuse" and "never re-created" in decision.reason


def test_leftovers_removed_only_when_provably_start_sh_and_never_data():
    platform = frozenset({"kubeflow"})

    def obj(kind, namespace=None, name="x", **rest):
        meta = {"name": name, **({"namespace": namespace} if namespace else {})}
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, **rest}

    assert takeover.for_leftover(obj("Deployment", "kubeflow"), platform, frozenset()).action \
        == "remove"
    assert takeover.for_leftover(obj("Deployment", "default"), platform, frozenset()).action \
        == "keep"
    assert takeover.for_leftover(obj("PersistentVolumeClaim", "kubeflow"), platform,
                                 frozenset()).action == "keep"
    assert takeover.for_leftover(obj("Deployment", "kubeflow"), platform,
                                 frozenset({"Deployment kubeflow/x"})).reason.startswith(
        "site.yaml keeps it")
    binding = obj("ClusterRoleBinding", roleRef={"name": "r"},
                  subjects=[{"kind": "ServiceAccount", "namespace": "kubeflow", "name": "a"}])
    assert takeover.for_leftover(binding, platform, frozenset()).action == "remove"
    elsewhere = obj("ClusterRoleBinding", subjects=[{"kind": "ServiceAccount",
                                                     "namespace": "default", "name": "a"}])
    assert takeover.for_leftover(elsewhere, platform, frozenset()).action == "keep"
    role = obj("ClusterRole", name="r")
    assert takeover.for_leftover(role, platform, frozenset()).action == "keep"
    assert takeover.for_leftover(role, platform, frozenset(), frozenset({"r"})).action == "remove"


def test_never_a_second_volume_for_a_namespace_on_a_path_in_use():
    live = [pv("grafana-old", "/data/k8s/monitoring/grafana", "monitoring")]
    ours = [pv("grafana-new", "/data/k8s/monitoring/grafana/", "monitoring")]
    [clash] = takeover.host_path_clashes(ours, live)
    assert (clash.ours, clash.existing, clash.path) == ("grafana-new", "grafana-old",
                                                        "/data/k8s/monitoring/grafana")
    # the same volume taken over by name, or another namespace's volume: upstream's design
    assert takeover.host_path_clashes([pv("grafana-old", "/data/k8s/monitoring/grafana",
                                          "monitoring")], live) == []
    assert takeover.host_path_clashes([pv("b", "/data/k8s/monitoring/grafana", "infra")],
                                      live) == []


def test_immutable_fields_are_named_and_point_to_adopt_not_force():
    error = from_status(422, json.dumps({
        "reason": "Invalid", "message": 'ClusterRoleBinding.rbac.authorization.k8s.io "x" is '
        "invalid: roleRef: Invalid value: rbac.RoleRef{...}: cannot change roleRef",
        "details": {"causes": [{"reason": "FieldValueInvalid", "field": "roleRef",
                                "message": "Invalid value: ...: cannot change roleRef"}]}}))
    assert immutable_fields(error) == ["roleRef"]
    failure = object_failure("dashboard", "ClusterRoleBinding x", error)
    assert "cannot be changed in place (roleRef)" in failure.message
    assert "cubeinstall adopt" in failure.hint and "--force does not help" in failure.hint
    plain = from_status(422, json.dumps({"message": "spec.replicas: Invalid value: -1"}))
    assert immutable_fields(plain) == []


def test_a_kubectl_conflict_points_to_adopt():
    error = from_status(409, json.dumps({
        "reason": "Conflict", "message": 'Apply failed with 1 conflict: conflict with '
        '"kubectl-client-side-apply" using rbac.authorization.k8s.io/v1: .roleRef',
        "details": {"causes": [{"type": "FieldManagerConflict", "field": ".roleRef"}]}}))
    failure = object_failure("dashboard", "ClusterRoleBinding x", error)
    assert "cubeinstall adopt" in failure.hint and "--force" not in failure.hint


def controller(name: str, namespace: str, image: str, managers=("kubectl-client-side-apply",)):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace,
                         "managedFields": [entry(m, {}) for m in managers]},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}


class FakeSite:
    """Only what controllers.problems reads of a site: its components' modes."""

    def __init__(self, **modes):
        self.modes = modes

    def component(self, name):
        return Component(mode=self.modes.get(name, "install"))


NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow"}}


def test_a_second_volcano_needs_the_sites_choice():
    ours = {"volcano": [controller("volcano-scheduler", "volcano-system",
                                   "registry.example/volcanosh-vc-scheduler:v1.15.1")],
            "namespaces": [NS]}
    live = [controller("volcano-scheduler", "kubeflow", "volcanosh/vc-scheduler:v1.14.0")]
    [problem] = controllers.problems(live, FakeSite(), ours)
    assert "Volcano already runs (Deployment kubeflow/volcano-scheduler)" in problem
    assert "components.volcano.mode: existing" in problem and "replace" in problem
    assert controllers.problems(live, FakeSite(volcano="replace"), ours) == []
    # replace removes only what kubectl wrote in a platform namespace
    helm = [controller("volcano-scheduler", "kubeflow", "volcanosh/vc-scheduler:v1.14.0",
                       managers=("helm",))]
    [problem] = controllers.problems(helm, FakeSite(volcano="replace"), ours)
    assert "adopt does not remove it" in problem
    # mode existing renders no controller of ours: nothing to choose
    assert controllers.problems(live, FakeSite(volcano="existing"), {"volcano": []}) == []


def test_istio_more_than_two_minors_behind_is_refused_with_the_steps():
    ours = {"istio": [controller("istiod", "istio-system", "docker.io/istio/pilot:1.30.3")]}
    live = [controller("istiod", "istio-system", "docker.io/istio/pilot:1.15.0")]
    [problem] = controllers.problems(live, FakeSite(), ours)
    assert "runs Istio 1.15" in problem and "components.istio.mode: existing" in problem
    assert "1.15 -> 1.17 -> 1.19 -> 1.21 -> 1.23 -> 1.25 -> 1.27 -> 1.29 -> 1.30" in problem
    near = [controller("istiod", "istio-system", "docker.io/istio/pilot:1.28.1")]
    assert controllers.problems(near, FakeSite(), ours) == []


def test_what_a_kept_controller_runs_with_is_never_a_leftover():
    istiod = controller("istiod", "istio-system", "istio/pilot:1.15.0")
    pod = istiod["spec"]["template"]
    pod["metadata"] = {"labels": {"app": "istiod"}}
    pod["spec"].update(serviceAccountName="istiod",
                       volumes=[{"name": "m", "configMap": {"name": "istio"}}])

    def obj(kind, name, namespace=None, **rest):
        meta = {"name": name, **({"namespace": namespace} if namespace else {})}
        return {"kind": kind, "metadata": meta, **rest}

    candidates = [
        istiod,
        obj("Service", "istiod", "istio-system", spec={"selector": {"app": "istiod"}}),
        obj("Service", "other", "istio-system", spec={"selector": {"app": "other"}}),
        obj("ClusterRoleBinding", "istiod", subjects=[{"kind": "ServiceAccount", "name": "istiod",
                                                       "namespace": "istio-system"}],
            roleRef={"kind": "ClusterRole", "name": "istiod-role"}),
        obj("ValidatingWebhookConfiguration", "istiod-validator", webhooks=[{"clientConfig": {
            "service": {"namespace": "istio-system", "name": "istiod"}}}]),
    ]
    kept = controllers.kept_by_existing(FakeSite(istio="existing"), candidates)
    assert set(kept) == {"Deployment istio-system/istiod", "ServiceAccount istio-system/istiod",
                         "ConfigMap istio-system/istio", "Service istio-system/istiod",
                         "ClusterRoleBinding istiod", "ClusterRole istiod-role",
                         "ValidatingWebhookConfiguration istiod-validator"}
    assert "components.istio.mode: existing" in kept["Service istio-system/istiod"]
    assert controllers.kept_by_existing(FakeSite(), candidates) == {}  # replaced: removable
