"""Real upstream CRDs (up to 1.2 MB per object) apply, become Established, and re-apply as no-ops.

The files are read from ../shared/upstream at test time; they are never copied
into the repository.
"""

from __future__ import annotations

import json
import uuid

import pytest

from cubeinstall.core.yamlio import load_documents
from cubeinstall.kube.apply import apply_objects, uninstall_stage
from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.readiness import readiness
from tests.helpers import SHARED

pytestmark = pytest.mark.cluster

UPSTREAM = SHARED / "upstream"
SETS = {
    "volcano": ["volcano/v1.15.1/installer/volcano-development.yaml"],
    "prometheus-operator": ["prometheus-operator/v0.93.0/example/prometheus-operator-crd/*.yaml"],
    "argo-workflows": ["argo-workflows/v4.1.2/manifests/base/crds/full/argoproj.io_*.yaml"],
}
SSA_ONLY = 256 * 1024  # over this, client-side apply's annotation cannot hold the object


def upstream_crds(patterns: list[str]) -> list[dict]:
    files = [path for pattern in patterns for path in sorted(UPSTREAM.glob(pattern))]
    if not files:
        pytest.fail(f"no upstream files match {patterns} under {UPSTREAM}")
    return [doc for path in files for doc in load_documents(path.read_text())
            if doc.get("kind") == "CustomResourceDefinition"]


@pytest.mark.parametrize("component", list(SETS))
def test_upstream_crds_apply_and_become_established(kube_cluster, component):
    kube = KubeClient(kube_cluster.api_client())
    crds = upstream_crds(SETS[component])
    stage = f"upstream-{component}-{uuid.uuid4().hex[:6]}"
    try:
        changes = apply_objects(kube, stage, crds, timeout=600)
        assert [c.action for c in changes] == ["create"] * len(crds)
        resource = kube.resolve("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        for crd in crds:
            live = kube.get(resource, None, crd["metadata"]["name"])
            assert readiness(live).ok, f"{crd['metadata']['name']}: {readiness(live).message}"
        if component == "argo-workflows":
            biggest = max(len(json.dumps(crd)) for crd in crds)
            assert biggest > 4 * SSA_ONLY, biggest  # the 1.2 MB case really was exercised
        again = apply_objects(kube, stage, crds, timeout=600)
        assert {c.action for c in again} == {"unchanged"}
    finally:
        uninstall_stage(kube, stage, timeout=600)
