"""The stage registry: complete, ordered, every need met by an earlier stage."""

from __future__ import annotations

import pytest

from cubeinstall.site import stages as registry
from cubeinstall.site.loader import load_site
from tests.helpers import EXAMPLE_SITE

DESIGN_ORDER = [
    "node-prep", "storage", "gpu-runtime", "registry-trust", "images", "namespaces", "node-labels", "dashboard",
    "kube-batch", "mysql", "databases", "redis", "istio", "ingress", "kubeflow", "prometheus", "efk",
    "frameworkcontroller", "volcano", "kubeconfig", "pv-pvc", "cube", "gateway", "gpu",
]


def test_every_stage_in_design_order():
    assert list(registry.STAGE_NAMES) == DESIGN_ORDER


def test_gateways_on_every_cluster_routes_on_the_platform():
    """The platform binds its notebooks' VirtualServices to kubeflow/kubeflow-gateway of
    the cluster they run in: the Gateways (ingress) go everywhere, its own routes
    (gateway) only where it runs; ingress took the Gateways over from gateway."""
    ingress, gateway = registry.get("ingress"), registry.get("gateway")
    assert ingress.scope is registry.Scope.EVERY_CLUSTER
    assert gateway.scope is registry.Scope.PLATFORM
    assert "ingress" in registry.prerequisites(gateway)
    assert "istio" in registry.prerequisites(ingress)
    assert registry.taken_over_by("gateway") == (ingress,)
    assert registry.taken_over_by("ingress") == ()


def test_every_need_is_provided_by_an_earlier_stage():
    provided: set[str] = set()
    for stage in registry.STAGES:
        missing = set(stage.needs) - provided
        assert not missing, f"{stage.name} needs {missing}, which no earlier stage provides"
        provided.update(stage.provides)


def test_every_need_has_a_provider():
    needed = {need for stage in registry.STAGES for need in stage.needs}
    provided = {cap for stage in registry.STAGES for cap in stage.provides}
    assert needed <= provided


def test_labels_precede_every_placed_workload():
    order = registry.STAGE_NAMES
    for stage in registry.STAGES:
        if stage.placement:
            assert order.index("node-labels") < order.index(stage.name), stage.name


def test_enabled_for_example_site():
    site = load_site(EXAMPLE_SITE)
    enabled = {stage.name for stage in registry.STAGES if stage.enabled(site)}
    assert "kube-batch" not in enabled  # off by default and in the example
    assert {"gpu-runtime", "registry-trust", "mysql", "images"} <= enabled  # insecure registry


@pytest.mark.parametrize("registry_data, enabled", [
    ({"host": "r.example.com:5000", "insecure": True}, True),
    ({"host": "r.example.com", "ca_file": "ca.pem"}, True),
    ({"host": "r.example.com"}, False),  # a publicly trusted certificate: nothing to do
    ({"host": "r.example.com", "insecure": True, "mirror": False}, False),  # nodes pull elsewhere
    (None, False),
])
def test_registry_trust_only_where_nodes_need_it(registry_data, enabled):
    site = load_site(EXAMPLE_SITE)
    registry_value = None if registry_data is None else \
        type(site.registry).model_validate(registry_data, context={"base_dir": "/tmp"})
    site = site.model_copy(update={"registry": registry_value})
    assert registry.get("registry-trust").enabled(site) is enabled


def test_layers():
    layers = {stage.name: stage.layer for stage in registry.STAGES}
    assert layers["storage"] is registry.Layer.NODE
    assert layers["images"] is registry.Layer.REGISTRY
    assert layers["databases"] is registry.Layer.DATABASE
    assert layers["gateway"] is registry.Layer.CLUSTER
