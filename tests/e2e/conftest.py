"""The e2e platform: every real server of the test suite, composed into one site.

- a control plane of its own with the kwok nodes node1, node2, gpu1 (the session's
  ``kube_cluster`` is shared with tests that leave owned objects behind, and the e2e
  proves that uninstall leaves NONE: it needs a cluster nobody else wrote to);
- sandboxed sshd nodes with the same names: node2 has swap on, gpu1 has GPUs, the
  NVIDIA tools and a pre-existing daemon.json, and is reached as sudo user ``ubuntu``;
- the session's MariaDB as the site's external MySQL;
- a registry with htpasswd auth and TLS (the site's ``ca_file``) as the site registry;
- the loopback HTTP mirror of the upstream files as ``upstream.base_url``.

tests/e2e/site.yaml is copied into the module's temp dir with the servers' addresses,
ports and paths filled in; its secrets stay ${env:...} references, set in the CLI's
environment only. Cache (CUBEINSTALL_CACHE) and state (CUBEINSTALL_STATE_DIR) are the
module's own: `bundle fetch` fills the empty cache over HTTP, `images load` fills the
registry from a saved-images directory (see saved_images.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.cluster import testimages
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import KUBECONFIG_ENV, KubeCluster
from tests.cluster.realnode import RealNode
from tests.e2e import observe
from tests.e2e.harness import Cli, Run
from tests.e2e.saved_images import build_saved_directory
from tests.servers.http_upstream import HttpServer
from tests.servers.mariadb import MariaDBServer
from tests.servers.registry import (
    TARGET_PASSWORD,
    TARGET_USER,
    RegistryServer,
    start_registry,
)
from tests.servers.sshd import NodeSpec, SandboxNode, User, start_node

SITE = Path(__file__).with_name("site.yaml")
CEPH_KEY = "AQBe2eKeyForTheSandbox+/=="
SECRETS = {
    "E2E_REGISTRY_PASSWORD": TARGET_PASSWORD,
    "E2E_CEPH_KEY": CEPH_KEY,
    "E2E_MYSQL_APP_PASSWORD": "cube-App-pw'1",
    "E2E_REDIS_PASSWORD": "e2e-Redis-pw",
    "E2E_GRAFANA_PASSWORD": "e2e-Grafana-pw",
}  # + E2E_MYSQL_PASSWORD: the MariaDB root password
GPU_DAEMON_JSON = {"log-driver": "json-file", "log-opts": {"max-size": "100m"}}
NODE_SPECS = {
    "node1": NodeSpec(),
    "node2": NodeSpec(swap=True),
    "gpu1": NodeSpec(users=(User("ubuntu"),),
                     gpus=("535.104.05,NVIDIA A100-SXM4-80GB",) * 2,
                     nvidia_tools=("nvidia-container-runtime", "nvidia-ctk"),
                     files={"/etc/docker/daemon.json": json.dumps(GPU_DAEMON_JSON).encode()}),
}


@dataclass
class Platform:
    cli: Cli
    site: Path
    workdir: Path
    cluster: KubeCluster
    nodes: dict[str, SandboxNode]
    mariadb: MariaDBServer
    registry: RegistryServer
    images: dict[str, str]  # source -> digest of the loaded stand-in

    @property
    def state_dir(self) -> Path:
        return Path(self.cli.env["CUBEINSTALL_STATE_DIR"])

    def journal(self) -> dict:
        path = self.state_dir / "e2e.journal.json"
        return json.loads(path.read_text())["stages"] if path.exists() else {}

    def owned(self) -> dict[str, str]:
        return observe.owned_objects(self.cluster.kubeconfig)

    def kept(self) -> set[str]:
        """What uninstall left for its data: no longer managed, marked for --purge."""
        return set(observe.owned_objects(self.cluster.kubeconfig, selector=observe.KEPT))

    def host_files(self) -> dict:
        return observe.host_files(self.nodes.values())


@pytest.fixture(scope="module")
def e2e_cluster(tmp_path_factory) -> KubeCluster:
    external = os.environ.get(KUBECONFIG_ENV)
    if external:  # the operator's own cluster (kind, k3d...): used as it is
        yield KubeCluster(Path(external).expanduser())
        return
    control_plane = ControlPlane(tmp_path_factory.mktemp("e2e-cluster"))
    try:
        control_plane.start()
    except Exception as exc:  # noqa: BLE001 - any failure fails the tests, never skips
        pytest.fail(f"the e2e control plane did not start:\n{exc}", pytrace=False)
    yield KubeCluster(control_plane.kubeconfig, control_plane)
    control_plane.stop()


@pytest.fixture(scope="module")
def e2e_nodes(tmp_path_factory, ssh_client_key) -> dict[str, SandboxNode]:
    workdir = tmp_path_factory.mktemp("e2e-nodes")
    nodes = {}
    try:
        for name, spec in NODE_SPECS.items():
            nodes[name] = start_node(name, workdir / name, ssh_client_key.with_suffix(".pub"), spec)
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


@pytest.fixture(scope="module")
def e2e_registry(tmp_path_factory, registry_tls) -> RegistryServer:
    server = start_registry(tmp_path_factory.mktemp("e2e-registry"),
                            auth=(TARGET_USER, TARGET_PASSWORD), tls=registry_tls)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def e2e_mariadb(mariadb_server: MariaDBServer) -> MariaDBServer:
    if not mariadb_server.process.running():
        pytest.fail(f"MariaDB is not running\n{mariadb_server.log_tail()}", pytrace=False)
    mariadb_server.reset()  # no database or account of an earlier test
    return mariadb_server


def real_node_registry(workdir: Path, registry_tls, real_node: RealNode,
                       images: tuple[str, ...]) -> RegistryServer:
    """A site registry (TLS + htpasswd) holding the test images ``images``
    (tests/cluster/testimages.py) under the names the site's images are rewritten to,
    trusted by the real node. The caller stops it."""
    server = start_registry(workdir, auth=(TARGET_USER, TARGET_PASSWORD), tls=registry_tls)
    for name in images:
        image = testimages.IMAGES[name]
        testimages.push(name, f"{server.host}/cube-studio/{name}:{image.tag}",
                        creds=(TARGET_USER, TARGET_PASSWORD))
    real_node.trust_registry(server.host, ca_file=server.ca_file)
    return server


def write_site(workdir: Path, *, kubeconfig: Path, nodes: dict[str, SandboxNode],
               registry: RegistryServer, mariadb: MariaDBServer, upstream_url: str,
               key_file: Path) -> Path:
    """tests/e2e/site.yaml with the runtime values of the servers filled in."""
    data = yaml.safe_load(SITE.read_text())
    data["clusters"][0]["kubeconfig"] = str(kubeconfig)
    data["registry"].update(host=registry.host, ca_file=str(registry.ca_file))
    data["ssh"].update(key_file=str(key_file), known_hosts=str(workdir / "known_hosts"),
                       config_file=str(workdir / "no-ssh-config"))
    for node in data["nodes"]:
        node.update(address=nodes[node["name"]].address, port=nodes[node["name"]].port)
    data["mysql"].update(host=mariadb.host, port=mariadb.port)
    data["upstream"]["base_url"] = upstream_url
    path = workdir / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli_environment(workdir: Path, mysql_password: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CUBEINSTALL_")}
    env.update(SECRETS, E2E_MYSQL_PASSWORD=mysql_password, NO_COLOR="1",
               CUBEINSTALL_CACHE=str(workdir / "cache"),
               CUBEINSTALL_STATE_DIR=str(workdir / "state"))
    return env


def _require(run: Run, what: str) -> Run:
    if run.code != 0:
        pytest.fail(f"{what} failed:\n{run.explain()}", pytrace=False)
    return run


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, e2e_cluster, e2e_nodes, e2e_registry, e2e_mariadb,
        upstream_server: HttpServer, ssh_client_key) -> Platform:
    """The platform, prepared as an air-gapped operator would: upstream files fetched
    from the mirror into an empty cache, the saved images loaded into the registry."""
    workdir = tmp_path_factory.mktemp("e2e")
    site = write_site(workdir, kubeconfig=e2e_cluster.kubeconfig, nodes=e2e_nodes,
                      registry=e2e_registry, mariadb=e2e_mariadb, upstream_url=upstream_server.url,
                      key_file=ssh_client_key)
    cli = Cli(site, cli_environment(workdir, e2e_mariadb.root_password), workdir)
    _require(cli("bundle", "fetch"), "cubeinstall bundle fetch (into the empty cache)")
    listed = _require(cli("images", "list"), "cubeinstall images list")
    sources = sorted({event["source"] for event in listed.of("image")})
    digests = build_saved_directory(sources, workdir / "saved-images")
    _require(cli("images", "load", str(workdir / "saved-images")), "cubeinstall images load")
    return Platform(cli, site, workdir, e2e_cluster, e2e_nodes, e2e_mariadb, e2e_registry,
                    digests)


@pytest.fixture(scope="module")
def first_run(e2e: Platform) -> Run:
    """The first `all`: new hosts trusted (and recorded in known_hosts) on the way."""
    return e2e.cli("all", "--trust-new-hosts")
