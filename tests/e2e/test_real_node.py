"""End to end on a real node: the example site's in-cluster MySQL and Redis really run.

The default site keeps MySQL and Redis in the cluster. On kwok nodes their pods never
answer a byte, so tests/e2e/test_e2e.py has to use an external MariaDB and skip the
Redis gate. Here the control plane has, besides the kwok nodes, a real kubelet +
containerd node ``real1`` (tests/cluster/realnode.py) carrying the site's ``mysql``
and ``redis`` roles, and the site registry (TLS + htpasswd) holds test images for
``mysql:8.0.44`` and ``redis:7.4.6`` built from Debian packages
(tests/cluster/testimages.py) under the names the site's images are rewritten to.
So, driving the CLI as an operator does:

- the mysql stage starts a real MariaDB on real1 (root password from the Secret, on an
  empty data directory of the hostPath PV), its probes really run;
- the databases stage creates the platform databases through a real port-forward
  (API server -> kubelet -> containerd -> the pod), the redis stage's gate logs in
  to the real Redis through one;
- uninstall keeps the data directory on the volume, and a re-install finds the
  databases and a row written before, under the first install's root password;
- a hand-broken my.cnf makes mysqld exit at start: a real CrashLoopBackOff, and the
  stage's error and the support bundle quote mysqld's own last log lines.

Only the cluster stages run (``--only``): the node stages are proven by test_e2e.py on
sandboxed sshd nodes, and ``storage-mounted`` (an SSH check of /data/k8s) is accepted
with ``--ignore``: real1 has no sshd, its /data/k8s is the node's own directory.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path

import pymysql
import pytest
import yaml

from tests.cluster import build
from tests.cluster.fixtures import KubeCluster, start_control_plane
from tests.cluster.nodes import DEFAULT_NODES, FakeNode
from tests.cluster.realnode import RealNodeSpec
from tests.e2e.conftest import SITE, cli_environment, real_node_registry
from tests.e2e.harness import Cli, Run
from tests.servers.registry import RegistryServer

pytestmark = pytest.mark.e2e

STAGES = ("namespaces", "node-labels", "mysql", "databases", "redis")
ONLY = [arg for stage in STAGES for arg in ("--only", stage)]
IGNORE = ["--ignore", "storage-mounted"]
ROOT_PASSWORD = "e2e-Root pw'1"
PLATFORM_DATABASES = {"kubeflow", "mlpipeline", "katib", "metadb", "cachedb"}
DATA_DIR = "/data/k8s/infra/mysql"  # the mysql PV's hostPath on real1
# node1 as in the example site but without the mysql and redis roles: real1 has them.
KWOK_NODES = tuple(
    FakeNode(n.name, labels={k: v for k, v in n.labels.items() if k not in ("mysql", "redis")},
             capacity=n.capacity, address=n.address) for n in DEFAULT_NODES)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> KubeCluster:
    control_plane = start_control_plane(
        tmp_path_factory.mktemp("real-e2e-cluster"), "the e2e control plane with a real node",
        nodes=KWOK_NODES, real_node=RealNodeSpec("real1", taints=()))
    CLUSTER.append(KubeCluster(control_plane.kubeconfig, control_plane))
    yield CLUSTER[0]
    CLUSTER.clear()
    control_plane.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, registry_tls, cluster: KubeCluster) -> RegistryServer:
    """The site registry with the MySQL and Redis test images under the rewritten names."""
    server = real_node_registry(tmp_path_factory.mktemp("real-e2e-registry"), registry_tls,
                                cluster.control_plane.real_node, ("mysql", "redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cli(tmp_path_factory, cluster: KubeCluster, registry: RegistryServer,
        ssh_client_key: Path, upstream_server) -> Cli:
    workdir = tmp_path_factory.mktemp("real-e2e")
    data = yaml.safe_load(SITE.read_text())
    data["clusters"][0]["kubeconfig"] = str(cluster.kubeconfig)
    data["registry"].update(host=registry.host, ca_file=str(registry.ca_file))
    data["ssh"].update(key_file=str(ssh_client_key), known_hosts=str(workdir / "known_hosts"),
                       config_file=str(workdir / "no-ssh-config"))
    kwok = {n.name: n for n in KWOK_NODES}
    for node in data["nodes"]:  # never dialled: only cluster stages run
        node.update(address=kwok[node["name"]].address, port=22)
        node["roles"] = [r for r in node["roles"] if r not in ("mysql", "redis")]
    data["nodes"].append({"name": "real1", "address": cluster.control_plane.real_node.address,
                          "roles": ["cpu", "mysql", "redis"]})
    data["mysql"] = {"mode": "in-cluster", "user": "root",
                     "password": "${env:E2E_MYSQL_PASSWORD}",
                     "app_user": data["mysql"]["app_user"]}
    data["gates"]["services"] = "probe"  # the Redis gate, through a real port-forward
    data["timeouts"]["object_seconds"] = 120
    data["upstream"]["base_url"] = upstream_server.url  # the loopback mirror
    site = workdir / "site.yaml"
    site.write_text(yaml.safe_dump(data, sort_keys=False))
    cli = Cli(site, cli_environment(workdir, ROOT_PASSWORD), workdir)
    _ok(cli("bundle", "fetch"))  # what any stage renders from upstream files, into the empty cache
    return cli


CLUSTER: list[KubeCluster] = []  # this module's cluster, for what failures print


def _ok(run: Run) -> Run:
    assert run.code == 0, run.explain() + (infra_state(CLUSTER[0]) if CLUSTER else "")
    return run


def infra_state(cluster: KubeCluster) -> str:
    """The infra pods (restarts, last state), their log tails and the namespace's events."""
    from kubernetes import client

    lines = ["", "--- infra namespace on the real node ---"]
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        for pod in core.list_namespaced_pod("infra").items:
            for status in pod.status.container_statuses or []:
                lines.append(f"pod {pod.metadata.name} on {pod.spec.node_name}: ready "
                             f"{status.ready}, restarts {status.restart_count}, state "
                             f"{status.state}, last {status.last_state}")
            for previous in (False, True):
                try:
                    log = core.read_namespaced_pod_log(pod.metadata.name, "infra",
                                                       previous=previous, tail_lines=15)
                except Exception as exc:  # noqa: BLE001 - no previous container, say so
                    log = f"({exc.__class__.__name__})"
                lines.append(f"  log{' (previous)' if previous else ''}:\n    "
                             + log.replace("\n", "\n    "))
        for event in core.list_namespaced_event("infra").items[-25:]:
            lines.append(f"event {event.type} {event.reason} {event.involved_object.name}: "
                         f"{event.message}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def installed(cli: Cli) -> Run:
    return cli("all", *ONLY, *IGNORE)


# --- helpers reading the servers directly (never through the product) ---------------------

def pods(cluster: KubeCluster, app: str) -> list:
    from kubernetes import client

    with cluster.api_client() as api:
        return client.CoreV1Api(api).list_namespaced_pod(
            "infra", label_selector=f"app={app}").items


@contextlib.contextmanager
def mysql(cluster: KubeCluster, database: str | None = None):
    """A pymysql connection to the in-cluster MySQL through `kubectl port-forward`."""
    kubectl = build.toolset().binary("kubectl")
    forward = subprocess.Popen([str(kubectl), "--kubeconfig", str(cluster.kubeconfig), "-n",
                                "infra", "port-forward", "deploy/mysql", ":3306"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = forward.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, f"kubectl port-forward said {line!r} {forward.stderr.read() if forward.poll() is not None else ''}"
        connection = pymysql.connect(host="127.0.0.1", port=int(match.group(1)), user="root",
                                     password=ROOT_PASSWORD, database=database,
                                     connect_timeout=10, autocommit=True)
        try:
            yield connection
        finally:
            connection.close()
    finally:
        forward.terminate()
        forward.wait(10)


def query(cluster: KubeCluster, sql: str, database: str | None = None) -> list[tuple]:
    with mysql(cluster, database) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def wait_for(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


# --- 1. install ------------------------------------------------------------------------

def test_mysql_and_redis_run_on_the_real_node(cluster: KubeCluster, registry: RegistryServer,
                                              installed: Run):
    _ok(installed)
    assert sorted(installed.started) == sorted(STAGES)
    for stage in STAGES:
        assert installed.done[stage]["changed"] > 0, stage
    for app, image in (("mysql", "mysql:8.0.44"), ("redis", "redis:7.4.6")):
        [pod] = pods(cluster, app)
        assert pod.spec.node_name == "real1", app
        [status] = pod.status.container_statuses
        assert status.ready and status.restart_count == 0, (app, status)
        assert status.image == f"{registry.host}/cube-studio/{image}"
        assert status.image_id.startswith(f"{registry.host}/cube-studio/{image.split(':')[0]}@")
    # The databases exist in the real server (read here through our own port-forward).
    assert PLATFORM_DATABASES <= {row[0] for row in query(cluster, "SHOW DATABASES")}
    grants = query(cluster, "SHOW GRANTS FOR 'cube'@'%'")
    assert any("`kubeflow`" in row[0] for row in grants), grants
    # The Redis gate logged in through a port-forward to the real server.
    gate = [c for c in installed.of("change") if c["stage"] == "redis"
            and c["target"].startswith("redis ") and "PONG" in c["detail"]]
    assert gate, [c for c in installed.of("change") if c["stage"] == "redis"]
    real = cluster.control_plane.real_node
    assert real.path(f"{DATA_DIR}/mysql").is_dir()  # initialised on the PV's directory


def test_a_second_run_changes_nothing(cli: Cli, installed: Run):
    """Forced, the databases stage checks the app user's password on a second connection
    while its root connection is open: two nested port-forward connections. Known to
    stall now and then in cubeinstall's python port-forward bridge (the app user's
    handshake never reaches mysqld, which closes it after connect_timeout: 'connection
    reset by peer'); two kubectl port-forward sessions do not. Fails until that is fixed."""
    _ok(installed)
    forced = _ok(cli("all", "--force", *ONLY, *IGNORE))
    assert sorted(forced.started) == sorted(STAGES)
    assert {stage: event["changed"] for stage, event in forced.done.items()} == \
        {stage: 0 for stage in STAGES}, forced.explain()


# --- 2. uninstall keeps the data; a re-install finds it ---------------------------------

def test_uninstall_keeps_the_data_and_a_reinstall_finds_it(cli: Cli, cluster: KubeCluster,
                                                          installed: Run):
    _ok(installed)
    query(cluster, "CREATE TABLE kubeflow.e2e_marker (note VARCHAR(64))")
    query(cluster, "INSERT INTO kubeflow.e2e_marker VALUES ('written before uninstall')")
    real = cluster.control_plane.real_node

    removed = _ok(cli("--yes", "uninstall"))
    assert {e["stage"] for e in removed.of("stage-removed")} >= set(STAGES)
    wait_for(lambda: not pods(cluster, "mysql"), "the MySQL pod to go")
    assert real.path(f"{DATA_DIR}/kubeflow/e2e_marker.frm").is_file()  # still on the volume

    again = _ok(cli("all", *ONLY, *IGNORE))
    assert again.done["mysql"]["changed"] > 0  # the Deployment is back ...
    [pod] = pods(cluster, "mysql")
    assert pod.spec.node_name == "real1"
    # ... on the old data directory: no new initialisation, the first root password works.
    log = _pod_log(cluster, pod.metadata.name)
    assert "initializing database" not in log, log
    assert query(cluster, "SELECT note FROM kubeflow.e2e_marker") == \
        [("written before uninstall",)]
    databases = [c for c in again.changes("databases")]
    assert databases == [], databases  # all five found, none created again


def _pod_log(cluster: KubeCluster, name: str, previous: bool = False) -> str:
    from kubernetes import client

    with cluster.api_client() as api:
        return client.CoreV1Api(api).read_namespaced_pod_log(name, "infra", previous=previous)


# --- 3. a real crash ----------------------------------------------------------------------

BAD_OPTION = "innodb_bufer_pool_size = 512M"  # a typo an operator could make by hand
BACKED_OFF = 3  # crashes before the stage runs: the kubelet then waits 40 s to restart it
SHORT_WAIT = 10  # the stage's object timeout in that run, well inside the back-off


def test_a_bad_config_crash_loop_is_reported_with_mysqlds_own_log_lines(
        cli: Cli, cluster: KubeCluster, installed: Run):
    """mysql-configmap edited by hand with a typo and the pod restarted to read it:
    mysqld exits at start, the kubelet backs off (10 s, 20 s, 40 s). The mysql stage
    puts the ConfigMap back, but the crashed container only restarts when its back-off
    ends, after the stage's (short) wait: the stage fails naming the CrashLoopBackOff
    with mysqld's own last log lines, in its error and its support bundle. When the
    back-off ends the container reads the restored file and the next run converges."""
    from kubernetes import client

    _ok(installed)
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        good = core.read_namespaced_config_map("mysql-configmap", "infra").data["cube.cnf"]
        core.patch_namespaced_config_map("mysql-configmap", "infra", {
            "data": {"cube.cnf": good.replace("[mysqld]\n", f"[mysqld]\n{BAD_OPTION}\n", 1)}})
        [pod] = pods(cluster, "mysql")
        core.delete_namespaced_pod(pod.metadata.name, "infra")

    def backed_off():
        for pod in pods(cluster, "mysql"):
            for status in pod.status.container_statuses or []:
                if (status.state.waiting and status.state.waiting.reason == "CrashLoopBackOff"
                        and status.restart_count >= BACKED_OFF):
                    return pod
        return None

    crashed = wait_for(backed_off, f"the MySQL pod to crash {BACKED_OFF} times", timeout=180)
    previous = _pod_log(cluster, crashed.metadata.name, previous=True)
    assert "unknown variable 'innodb_bufer_pool_size=512M'" in previous, previous

    data = yaml.safe_load(cli.config.read_text())
    data["timeouts"]["object_seconds"] = SHORT_WAIT
    short = cli.config.with_name("short-wait.yaml")
    short.write_text(yaml.safe_dump(data, sort_keys=False))
    run = cli("stage", "mysql", "--force", "-c", str(short), config=False)
    assert run.code == 1, run.explain()
    [failed] = run.of("stage-failed")
    message = failed["error"]
    print(f"stage mysql failed as expected: {message}")
    assert "CrashLoopBackOff" in message or "keeps crashing" in message, message
    assert "unknown variable 'innodb_bufer_pool_size=512M'" in message, message
    bundle = Path(failed["support_bundle"]).read_text()
    assert "CrashLoopBackOff" in bundle
    assert "unknown variable 'innodb_bufer_pool_size=512M'" in bundle
    assert "Aborting" in bundle  # mysqld's own last words, not a canned line
    with cluster.api_client() as api:  # the stage did put the product's file back
        assert client.CoreV1Api(api).read_namespaced_config_map(
            "mysql-configmap", "infra").data["cube.cnf"] == good

    converged = _ok(cli("all", "--force", *ONLY, *IGNORE, timeout=300))
    assert converged.done["mysql"]["changed"] == 0, converged.explain()
    [pod] = pods(cluster, "mysql")
    assert pod.status.container_statuses[0].ready
