"""What a failed apply says: the object, the cause in the server's words, and the fix."""

import json

from cubeinstall.kube.engine import unchanged_without_asking
from cubeinstall.kube.errors import ApplyFailed, Unreachable, from_status
from cubeinstall.kube.failures import merge_failures, object_failure
from cubeinstall.kube.objects import desired_object


def test_field_conflict_names_the_manager_and_the_way_out():
    error = from_status(409, json.dumps({
        "reason": "Conflict", "message": 'Apply failed with 1 conflict: conflict with "helm" '
                                         'using v1: .data.level',
        "details": {"causes": [{"type": "FieldManagerConflict", "field": ".data.level"}]}}))
    failure = object_failure("mysql", "ConfigMap infra/settings", error)
    assert str(failure).startswith("stage mysql: ConfigMap infra/settings: fields are owned by "
                                   "helm: Apply failed")
    assert "force" in failure.hint and failure.targets == ("ConfigMap infra/settings",)


def test_invalid_object_and_unreachable_server():
    invalid = from_status(422, json.dumps({"reason": "Invalid",
                                           "message": "spec.replicas: Invalid value: -1"}))
    assert "rejected by the API server: spec.replicas: Invalid value: -1" in str(
        object_failure("s", "Deployment a/b", invalid))
    down = object_failure("s", "Deployment a/b", Unreachable("connection refused"))
    assert "still failing at the deadline: connection refused" in str(down)


def test_many_failures_are_counted_not_all_quoted():
    failures = [ApplyFailed("s", f"ConfigMap n/c{i}: boom", "hint", (f"ConfigMap n/c{i}",))
                for i in range(12)]
    merged = merge_failures("s", "config", failures)
    text = str(merged)
    assert text.startswith("stage s: 12 objects of phase config failed:")
    assert "ConfigMap n/c4: boom" in text and "ConfigMap n/c5" not in text
    assert "... and 7 more" in text and len(merged.targets) == 12
    assert "stage s: ConfigMap" not in text  # no repeated prefix


def test_unchanged_without_asking_needs_our_digest_and_the_values():
    desired = desired_object({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "c", "namespace": "n"}, "data": {"a": "1"}},
                             "s", namespaced=True)
    live = json.loads(json.dumps(desired))
    live["metadata"].update(uid="u", resourceVersion="7")
    live["data"]["added-by-someone"] = "x"
    assert unchanged_without_asking(desired, live)
    live["data"]["a"] = "2"
    assert not unchanged_without_asking(desired, live)
    live["data"]["a"] = "1"
    live["metadata"]["annotations"]["cubeinstall.io/applied-digest"] = "older"
    assert not unchanged_without_asking(desired, live)
