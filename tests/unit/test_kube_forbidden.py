"""403 answers: a missing right (RBAC) or an admission rule refusing the change itself.

The API server answers both with 403 Forbidden. Only the first is fixed by rights; a
claim's size on a statically provisioned volume (every claim start.sh makes) is the
second, and cannot change in place like an immutable field (found by
tests/e2e/test_adopt_real_node.py: adopt of a start.sh site's Grafana claim)."""

from __future__ import annotations

import json

from cubeinstall.kube import takeover
from cubeinstall.kube.errors import Forbidden, from_status
from cubeinstall.kube.failures import object_failure
from cubeinstall.kube.immutable import CLAIM_SIZE, immutable_fields

RESIZE = ('persistentvolumeclaims "monitoring-grafana-pvc" is forbidden: only dynamically '
          "provisioned pvc can be resized and the storageclass that provisions the pvc must "
          "support resize")
RBAC = ('persistentvolumeclaims "x" is forbidden: User "system:serviceaccount:ci:deployer" '
        'cannot patch resource "persistentvolumeclaims" in API group "" in the namespace "y"')


def forbidden(message: str) -> Forbidden:
    error = from_status(403, json.dumps({"kind": "Status", "reason": "Forbidden",
                                         "message": message}), "PersistentVolumeClaim y/x")
    assert isinstance(error, Forbidden)
    return error


def test_only_a_missing_right_asks_for_cluster_admin():
    assert forbidden(RBAC).hint == Forbidden.default_hint
    refused = forbidden(RESIZE)
    assert "cluster-admin" not in refused.hint and "admission" in refused.hint


def test_a_static_claims_size_cannot_change_in_place():
    error = forbidden(RESIZE)
    assert immutable_fields(error) == [CLAIM_SIZE]
    assert immutable_fields(forbidden(RBAC)) == []
    failure = object_failure("prometheus", "PersistentVolumeClaim monitoring/grafana", error)
    assert f"cannot be changed in place ({CLAIM_SIZE})" in failure.message
    assert "cubeinstall adopt" in failure.hint
    live = {"kind": "PersistentVolumeClaim",
            "metadata": {"name": "monitoring-grafana-pvc", "namespace": "monitoring"}}
    decision = takeover.for_rendered("prometheus", live, changed=True,
                                     immutable=immutable_fields(error))
    assert decision.action == "refuse" and "volumes.<claim>" in decision.reason
