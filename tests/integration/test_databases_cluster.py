"""The in-cluster MySQL/Redis path against the real (kwok-simulated) Kubernetes API.

What a kwok cluster can prove: the Service -> selector -> ready pod ->
container port resolution against a real API server, the "not deployed
yet" plan, and that a port-forward the API server cannot complete becomes a
clear error naming the pod. What it cannot: kwok pods serve no traffic and
kwok runs no kubelet API here, so no byte reaches a MySQL through the
port-forward. The bytes-through-the-bridge half is proven against a real
MariaDB in test_databases_bridge.py.

Each test works in its own namespace (the in-cluster namespace constant is
pointed at it) so that it never meets the mysql/redis stages' own tests.
"""

from __future__ import annotations

import time

import pytest

from cubeinstall.core.errors import StageFailed
from cubeinstall.db import connection, redis_gate
from cubeinstall.db.portforward import ForwardError, ServiceTarget, forward_service
from cubeinstall.stages import databases as stage

pytestmark = pytest.mark.cluster


def in_cluster_context(kube_cluster, **mysql):
    from cubeinstall.site.secrets import Secret
    from tests.servers.mariadb import context_for, site_for

    site = site_for("unused", 3306, "root-pw-123", object_seconds=3, **mysql)
    site = site.model_copy(update={"mysql": site.mysql.model_copy(update={
        "mode": "in-cluster", "host": None})})
    site = site.model_copy(update={"redis": site.redis.model_copy(update={
        "mode": "in-cluster", "password": Secret("redis-pw-123", "test value")})})
    return context_for(site, kubeconfig=kube_cluster.kubeconfig)


@pytest.fixture
def infra(test_namespace, monkeypatch):
    """The test's namespace plays `infra` for the in-cluster constants."""
    monkeypatch.setattr(connection, "IN_CLUSTER_NAMESPACE", test_namespace)
    monkeypatch.setattr(redis_gate, "IN_CLUSTER_NAMESPACE", test_namespace)
    return test_namespace


def core_api(kube_cluster):
    from kubernetes import client

    return client.CoreV1Api(kube_cluster.api_client())


def create_service(core, namespace, name, port, target_port, selector=None):
    core.create_namespaced_service(namespace, {
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": port, "targetPort": target_port}]}})


def create_ready_pod(core, namespace, name, labels, port_name, port, timeout=60.0):
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeSelector": {"mysql": "true"}, "containers": [{
            "name": "server", "image": "mysql:8.0.32",
            "ports": [{"name": port_name, "containerPort": port}]}]}})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        conditions = pod.status.conditions or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            return pod
        time.sleep(0.2)
    pytest.fail(f"pod {namespace}/{name} did not become Ready in {timeout}s (kwok)")


def test_plan_before_mysql_is_deployed_lists_everything_to_create(kube_cluster, infra):
    changes = stage.plan(in_cluster_context(kube_cluster))

    assert [c.action for c in changes] == ["create"] * 5
    assert all(c.detail.endswith("(MySQL not deployed yet)") for c in changes)


def test_apply_before_mysql_is_deployed_fails_fast_and_says_why(kube_cluster, infra):
    started = time.monotonic()
    with pytest.raises(StageFailed) as failed:
        stage.apply(in_cluster_context(kube_cluster))
    assert time.monotonic() - started < 3  # a missing Service does not heal by waiting
    text = str(failed.value)
    assert f"Service {infra}/mysql-service not found" in text
    assert "run the stage that deploys it first" in text


def test_service_resolves_to_the_ready_pod_and_named_port(kube_cluster, infra):
    core = core_api(kube_cluster)
    create_service(core, infra, "mysql-service", 3306, "mysql", {"app": "mysql"})
    create_ready_pod(core, infra, "mysql-0", {"app": "mysql"}, "mysql", 3306)
    core.create_namespaced_pod(infra, {  # never schedulable: must not be chosen
        "metadata": {"name": "mysql-1", "labels": {"app": "mysql"}},
        "spec": {"nodeSelector": {"no-such-label": "true"},
                 "containers": [{"name": "server", "image": "mysql:8.0.32"}]}})

    assert ServiceTarget(core, infra, "mysql-service", 3306).resolve() == ("mysql-0", 3306)


def test_no_ready_pod_is_reported_with_the_pods_seen(kube_cluster, infra):
    core = core_api(kube_cluster)
    create_service(core, infra, "mysql-service", 3306, 3306, {"app": "mysql"})
    core.create_namespaced_pod(infra, {
        "metadata": {"name": "mysql-pending", "labels": {"app": "mysql"}},
        "spec": {"nodeSelector": {"no-such-label": "true"},
                 "containers": [{"name": "server", "image": "mysql:8.0.32"}]}})

    with pytest.raises(ForwardError) as failed:
        ServiceTarget(core, infra, "mysql-service", 3306).resolve()
    assert "no ready pod matches app=mysql (pods: mysql-pending (Pending))" in str(failed.value)
    assert not failed.value.permanent  # a pod may still become ready


def test_port_forward_to_a_kwok_pod_fails_with_the_pod_named(kube_cluster, infra):
    """kwok has no kubelet API: the API server cannot complete the port-forward."""
    core = core_api(kube_cluster)
    create_service(core, infra, "mysql-service", 3306, 3306, {"app": "mysql"})
    create_ready_pod(core, infra, "mysql-0", {"app": "mysql"}, "mysql", 3306)
    ctx = in_cluster_context(kube_cluster)

    with pytest.raises(StageFailed) as failed:
        stage.apply(ctx)
    text = str(failed.value)
    assert "mysql-service" in text and "is unreachable for user 'root'" in text
    assert f"port-forward to pod {infra}/mysql-0:3306 failed: error dialing backend" in text
    assert "root-pw-123" not in text


def test_forward_service_opens_and_closes_a_loopback_listener(kube_cluster, infra):
    import socket

    with forward_service(kube_cluster.kubeconfig, None, infra, "mysql-service", 3306) as bridge:
        port = bridge.port
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # it listens
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_redis_gate_in_cluster_before_redis_is_deployed(kube_cluster, infra):
    with pytest.raises(redis_gate.RedisUnreachable) as failed:
        redis_gate.check_redis(in_cluster_context(kube_cluster))
    assert f"Service {infra}/redis-master not found" in str(failed.value)
