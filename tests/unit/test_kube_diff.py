"""Normalisation, masked diffs and the no-request shortcut."""

from cubeinstall.core.redaction import MASK
from cubeinstall.kube.diff import compact_diff, contained_in, same
from cubeinstall.kube.objects import DIGEST_ANNOTATION, desired_object

LIVE = {"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "uid": "u1", "resourceVersion": "42",
                     "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1,
                     "managedFields": [{"manager": "cubeinstall"}],
                     "annotations": {DIGEST_ANNOTATION: "abc"}},
        "data": {"a": "1"}}


def test_server_managed_fields_do_not_count():
    result = {**LIVE, "metadata": {**LIVE["metadata"], "resourceVersion": "43",
                                   "managedFields": [{"manager": "cubeinstall", "time": "later"}]},
              "status": {"whatever": True}}
    assert same(LIVE, result)
    assert not same(LIVE, {**LIVE, "data": {"a": "2"}})


def test_diff_is_compact_and_names_the_object():
    diff = compact_diff(LIVE, {**LIVE, "data": {"a": "2"}}, "ConfigMap n/c")
    assert "--- live ConfigMap n/c" in diff and "+++ desired ConfigMap n/c" in diff
    assert "-  a: '1'" in diff and "+  a: '2'" in diff
    assert "resourceVersion" not in diff and "managedFields" not in diff


def test_secret_values_never_appear_in_a_diff():
    live = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "b2xk", "user": "cm9vdA=="}}
    new = {**live, "data": {"password": "bmV3", "user": "cm9vdA=="}}
    diff = compact_diff(live, new)
    assert "b2xk" not in diff and "bmV3" not in diff and "cm9vdA" not in diff
    assert f"+  password: '{MASK} (changed)'" in diff
    assert f"   user: '{MASK}'" in diff  # unchanged values stay context lines
    created = compact_diff(None, new)
    assert "bmV3" not in created and f"+  password: '{MASK}'" in created


def test_contained_in_is_exact_and_conservative():
    live = {"spec": {"replicas": 1, "ports": [{"port": 80, "protocol": "TCP"}], "x": None}}
    assert contained_in({"spec": {"replicas": 1, "ports": [{"port": 80}]}}, live)
    assert contained_in({"spec": {"x": None, "y": None}}, live)
    assert not contained_in({"spec": {"replicas": 2}}, live)
    assert not contained_in({"spec": {"replicas": "1"}}, live)  # re-formatted: ask the server
    assert not contained_in({"spec": {"replicas": True}}, {"spec": {"replicas": 1}})
    assert not contained_in({"spec": {"ports": []}}, live)


def test_contained_in_knows_canonical_quantities_and_omitted_empty_strings():
    """What the server stores for what we applied: cpu 10 -> "10", "2000m" -> "2"; a
    PersistentVolume's storageClassName "" is omitted. A re-run must not ask again."""
    live = {"spec": {"resources": {"limits": {"cpu": "2", "memory": "1Gi"},
                                   "requests": {"cpu": "10"}}},
            "capacity": {"storage": "100Gi"}}
    assert contained_in({"spec": {"resources": {"limits": {"cpu": "2000m"},
                                                "requests": {"cpu": 10}}}}, live)
    assert contained_in({"capacity": {"storage": "100Gi"}, "spec": {"storageClassName": ""}}, live)
    assert not contained_in({"spec": {"resources": {"limits": {"cpu": "3"}}}}, live)
    assert not contained_in({"spec": {"resources": {"limits": {"memory": "1G"}}}}, live)
    assert not contained_in({"spec": {"resources": {"limits": {"cpu": "two"}}}}, live)
    assert not contained_in({"spec": {"replicas": "2000m"}}, {"spec": {"replicas": 2}})  # no quantity
    assert not contained_in({"spec": {"name": ""}}, {"spec": {"name": "x"}})


def test_desired_object_labels_only_top_level_metadata():
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "creationTimestamp": None},
                  "spec": {"template": {"metadata": {"labels": {"app": "web"}}}},
                  "status": {"replicas": 0}}
    result = desired_object(deployment, "mysql", namespaced=True)
    assert result["metadata"]["namespace"] == "default"
    assert result["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "cubeinstall",
                                            "cubeinstall.io/stage": "mysql"}
    assert result["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    assert "status" not in result and "creationTimestamp" not in result["metadata"]
    assert deployment["metadata"] == {"name": "web", "creationTimestamp": None}  # not mutated
    again = desired_object(result, "mysql", namespaced=True)
    assert again == result  # the digest does not depend on a previous digest
    other = desired_object({**deployment, "spec": {}}, "mysql", namespaced=True)
    assert (other["metadata"]["annotations"][DIGEST_ANNOTATION]
            != result["metadata"]["annotations"][DIGEST_ANNOTATION])


def test_cluster_scoped_objects_lose_a_stray_namespace():
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "r", "namespace": "oops"}}
    assert "namespace" not in desired_object(role, "s", namespaced=False)["metadata"]
