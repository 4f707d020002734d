"""pytest plugin: a real Kubernetes cluster for the tests that need one.

Load it from the root conftest (``pytest_plugins = ["tests.cluster.fixtures"]``).

- ``kube_cluster`` (session): a KubeCluster with ``.kubeconfig`` and
  ``.api_client()``.  By default the local control plane of
  controlplane.py is started once per session (about 8 s) and stopped at
  the end.  With ``CUBEINSTALL_TEST_KUBECONFIG=/path/kubeconfig`` the tests
  use that existing cluster instead (kind, k3d, a `scripts/testcluster up`
  cluster...) and nothing is started or stopped.
- ``test_namespace`` (function): a fresh namespace, deleted afterwards.
- ``real_node_cluster`` (session): a local control plane of its own with the kwok
  nodes AND a real kubelet + containerd node (realnode.py, node ``real1``,
  tainted: a pod runs there only when pinned with REAL_NODE_PIN).  It ignores
  CUBEINSTALL_TEST_KUBECONFIG: its pods pull from the tests' loopback
  registries, which only the local real node can reach.

If the local control plane cannot start, the fixture FAILS with the
reason and the failing component's log tail.  It never skips: a silently
skipped cluster suite is how a broken installer ships.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .controlplane import ControlPlane
from .nodes import FakeNode
from .realnode import NODE_LABEL, REAL_NODE_TAINT, RealNodeSpec

#: Pod spec fields that put a pod on the real node of ``real_node_cluster`` (and only there).
REAL_NODE_PIN = {
    "nodeSelector": {NODE_LABEL: "true"},
    "tolerations": [{"key": REAL_NODE_TAINT["key"], "operator": "Equal",
                     "value": REAL_NODE_TAINT["value"], "effect": REAL_NODE_TAINT["effect"]}],
}

KUBECONFIG_ENV = "CUBEINSTALL_TEST_KUBECONFIG"


class KubeCluster:
    """What a test gets: a kubeconfig and clients for it."""

    def __init__(self, kubeconfig: Path, control_plane: ControlPlane | None = None) -> None:
        self.kubeconfig = kubeconfig
        #: The local control plane, or None for an external cluster.
        self.control_plane = control_plane

    @property
    def is_local(self) -> bool:
        return self.control_plane is not None

    def api_client(self) -> Any:
        """A new kubernetes.client.ApiClient (close it, or use it in `with`)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def dynamic_client(self, api_client: Any = None) -> Any:
        """A DynamicClient whose discovery cache is private to this cluster.

        The client's default cache file is keyed by host only and outlives
        the run, so another cluster on a reused port would poison it.
        """
        from kubernetes.dynamic import DynamicClient

        cache = self.kubeconfig.parent / f".discovery-{uuid.uuid4().hex[:8]}.json"
        return DynamicClient(api_client or self.api_client(), cache_file=str(cache))

    def add_node(self, *nodes: FakeNode, timeout: float = 60.0) -> None:
        """Add kwok nodes (local control plane only: kwok must manage them)."""
        if self.control_plane is None:
            pytest.fail(f"add_node needs the local control plane; {KUBECONFIG_ENV} is set")
        self.control_plane.add_node(*nodes, timeout=timeout)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    external = os.environ.get(KUBECONFIG_ENV)
    if external:
        path = Path(external).expanduser()
        if not path.is_file():
            pytest.fail(f"{KUBECONFIG_ENV}={external}: no such kubeconfig file", pytrace=False)
        yield KubeCluster(path)
        return

    control_plane = start_control_plane(tmp_path_factory.mktemp("kube-cluster"),
                                        "the local Kubernetes control plane")
    try:
        yield KubeCluster(control_plane.kubeconfig, control_plane)
    finally:
        control_plane.stop()


def start_control_plane(workdir: Path, what: str, **kwargs: Any) -> ControlPlane:
    """A started ControlPlane, or pytest.fail with the reason and log tails (never a skip)."""
    control_plane = ControlPlane(workdir, **kwargs)
    failure = None
    try:
        control_plane.start()
    except Exception as exc:  # noqa: BLE001 - any failure must fail, never skip
        failure = str(exc)
    if failure is not None:  # outside `except`: no chained traceback noise
        pytest.fail(f"{what} did not start:\n{failure}", pytrace=False)
    return control_plane


@pytest.fixture(scope="session")
def real_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    spec = RealNodeSpec("real1", labels={"cubeinstall.test/role": "real"})
    control_plane = start_control_plane(tmp_path_factory.mktemp("real-node-cluster"),
                                        "the control plane with a real node", real_node=spec)
    try:
        yield KubeCluster(control_plane.kubeconfig, control_plane)
    finally:
        control_plane.stop()


def _namespace_name(test_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"{base or 'test'}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def test_namespace(kube_cluster: KubeCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """The name of a new, empty namespace; deleted (not awaited) after the test."""
    yield from _namespace(kube_cluster, request)


@pytest.fixture
def real_node_namespace(real_node_cluster: KubeCluster,
                        request: pytest.FixtureRequest) -> Iterator[str]:
    """Like ``test_namespace``, in ``real_node_cluster``."""
    yield from _namespace(real_node_cluster, request)


def _namespace(cluster: KubeCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = _namespace_name(request.node.name)
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(
            {"metadata": {"name": name, "labels": {"cubeinstall.io/test": "true"}}}
        )
        try:
            yield name
        finally:
            try:
                core.delete_namespace(name, propagation_policy="Background")
            except ApiException as exc:
                if exc.status != 404:
                    raise
