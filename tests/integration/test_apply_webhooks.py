"""The webhook gate, against a real HTTPS webhook the API server calls on loopback."""

from __future__ import annotations

import io
import time
import uuid

import pytest

from cubeinstall.core.output import Output
from cubeinstall.kube.apply import apply_objects, uninstall_stage
from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.errors import ApplyFailed, NotFound

pytestmark = pytest.mark.cluster

LATE = 10.0


def hooked_objects(namespace: str, config_name: str, server) -> list[dict]:
    """A ConfigMap, and a fail-closed webhook intercepting ConfigMaps of that namespace."""
    return [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "intercepted", "namespace": namespace}, "data": {"a": "1"}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": config_name},
         "webhooks": [{
             "name": "check.cubeinstall.test",
             "clientConfig": {"url": server.url, "caBundle": server.ca_bundle},
             "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
                        "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}],
             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
             "failurePolicy": "Fail", "sideEffects": "None",
             "admissionReviewVersions": ["v1"], "timeoutSeconds": 5}]},
    ]


def test_engine_waits_for_a_webhook_that_starts_late(kube_cluster, test_namespace,
                                                     webhook_server):
    kube = KubeClient(kube_cluster.api_client())
    stage, config = f"hook-{uuid.uuid4().hex[:6]}", f"late-{uuid.uuid4().hex[:6]}"
    out = Output(json_mode=True, stream=io.StringIO())
    objects = hooked_objects(test_namespace, config, webhook_server)
    try:
        webhook_server.start_in(LATE)
        started = time.monotonic()
        changes = apply_objects(kube, stage, objects, timeout=60, out=out)
        elapsed = time.monotonic() - started
        assert [c.action for c in changes] == ["create", "create"]
        assert elapsed >= LATE - 0.5, "the apply returned before the webhook could answer"
        waits = [e["message"] for e in out.events if e.get("message", "").startswith("waiting for")]
        assert waits == [(f"waiting for ValidatingWebhookConfiguration {config} webhook "
                          "check.cubeinstall.test: its server to answer")]
        probes = [r["request"] for r in webhook_server.reviews]
        assert probes and probes[0]["dryRun"] is True
        assert probes[0]["kind"]["kind"] == "ConfigMap" and probes[0]["name"] == "intercepted"

        # The webhook is live for real writes now, and a re-run probes it again quickly.
        seen = len(webhook_server.reviews)
        configmaps = kube.resolve("v1", "ConfigMap")
        kube.request("POST", configmaps.path(test_namespace), body={
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"}})
        assert len(webhook_server.reviews) > seen
        out_again = Output(json_mode=True, stream=io.StringIO())
        again = apply_objects(kube, stage, objects, timeout=60, out=out_again)
        assert [c.action for c in again] == ["unchanged", "unchanged"]
        # the server answers at once: no wait (not a timing: a wait is an event)
        assert not [e for e in out_again.events
                    if e.get("message", "").startswith("waiting for")], out_again.events
    finally:
        uninstall_stage(kube, stage, timeout=60)
    with pytest.raises(NotFound):
        kube.get(kube.resolve("admissionregistration.k8s.io/v1",
                              "ValidatingWebhookConfiguration"), None, config)


def test_a_webhook_that_never_serves_fails_with_its_name(kube_cluster, test_namespace,
                                                         webhook_server):
    kube = KubeClient(kube_cluster.api_client())
    stage, config = f"dead-{uuid.uuid4().hex[:6]}", f"dead-{uuid.uuid4().hex[:6]}"
    try:
        with pytest.raises(ApplyFailed) as failure:
            apply_objects(kube, stage, hooked_objects(test_namespace, config, webhook_server),
                          timeout=5)
        message = str(failure.value)
        assert f"ValidatingWebhookConfiguration {config} webhook check.cubeinstall.test is " \
               "not serving" in message
        assert "failed calling webhook" in message
        assert "gates.webhooks: skip" in failure.value.hint

        skipped = apply_objects(kube, stage, hooked_objects(test_namespace, config,
                                                            webhook_server), webhooks="skip")
        assert [c.action for c in skipped] == ["unchanged", "unchanged"]
    finally:
        uninstall_stage(kube, stage, timeout=60)
