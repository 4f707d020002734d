"""End to end: `cubeinstall all` on real servers, twice, killed and resumed, uninstalled.

One platform per module (tests/e2e/conftest.py): a control plane with kwok nodes,
sandboxed sshd nodes, MariaDB as external MySQL, a TLS + htpasswd registry and the
upstream mirror. Each step runs the real CLI in a subprocess and asserts on its JSON
events and on the servers themselves. The tests share that platform and run in file
order: install, status, preflight, no-op re-runs, concurrent runs, kills, uninstall.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
import yaml

from tests.e2e import observe
from tests.e2e.conftest import CEPH_KEY, Platform
from tests.e2e.harness import Run
from tests.e2e.kill_points import POINTS, KillPoint
from tests.servers.mariadb import SYSTEM_SCHEMAS

pytestmark = pytest.mark.e2e

# Every stage the e2e site enables, in install order. mysql is off (external MySQL),
# kube-batch is off (APIs removed in Kubernetes 1.22).
ENABLED = ("node-prep", "storage", "gpu-runtime", "registry-trust", "images", "namespaces", "node-labels",
           "dashboard", "databases", "redis", "istio", "ingress", "kubeflow", "prometheus", "efk",
           "frameworkcontroller", "volcano", "kubeconfig", "pv-pvc", "cube", "gateway", "gpu")
PLATFORM_DATABASES = {"kubeflow", "mlpipeline", "katib", "metadb", "cachedb"}
PREFLIGHT_CHECKS = {"placement-labels", "gateway-exposure", "cluster-version",
                    "cluster-permissions", "cluster-nodes", "nodes-reachable",
                    "storage-mounted", "registry-reachable", "registry-login", "mysql-reachable"}


def docker_restarts(e2e: Platform) -> int:
    return sum(1 for call in e2e.nodes["gpu1"].shim_calls("systemctl")
               if call[1:] == ["restart", "docker"])


def world(e2e: Platform) -> dict:
    """Everything a no-op run must leave exactly as it was."""
    return {"cluster": observe.without_bookkeeping(e2e.owned()),
            "hosts": e2e.host_files(),
            "sql writes": e2e.mariadb.write_counters(),
            "docker restarts": docker_restarts(e2e)}


def assert_same_world(before: dict, after: dict) -> None:
    changed = sorted(key for key, version in after["cluster"].items()
                     if before["cluster"].get(key) != version)
    gone = sorted(set(before["cluster"]) - set(after["cluster"]))
    assert (changed, gone) == ([], []), f"objects written: {changed}; deleted: {gone}"
    for node, files in after["hosts"].items():
        written = sorted(path for path in set(files) | set(before["hosts"][node])
                         if files.get(path) != before["hosts"][node].get(path))
        assert written == [], f"{node}: files written: {written}"
    assert after["sql writes"] == before["sql writes"]
    assert after["docker restarts"] == before["docker restarts"]


def no_changes(run: Run, stages=ENABLED) -> None:
    assert run.code == 0, run.explain()
    assert {stage: event["changed"] for stage, event in run.done.items()} == \
        {stage: 0 for stage in stages}, run.explain()
    assert run.changes() == [], run.changes()


# --- 1. install --------------------------------------------------------------------------

def assert_each_stage_started_after_its_prerequisites(run: Run) -> None:
    """Stages run at once (--jobs), but never before what they need is done."""
    from cubeinstall.site import stages as registry

    position = {(e["event"], e.get("stage")): i for i, e in enumerate(run.events)}
    for stage in run.started:
        for needed in registry.prerequisites(registry.get(stage)) & set(run.started):
            assert position[("stage-done", needed)] < position[("stage-start", stage)], (
                f"{stage} started before {needed} was done")


def test_all_installs_every_enabled_stage(e2e: Platform, first_run: Run):
    assert first_run.code == 0, first_run.explain()
    assert sorted(first_run.started) == sorted(ENABLED)
    assert sorted(first_run.done) == sorted(ENABLED)
    assert_each_stage_started_after_its_prerequisites(first_run)
    assert [e for e in first_run.of("preflight") if e["grade"] == "error"] == []
    # Real work happened in every layer ...
    for stage in ("node-prep", "storage", "gpu-runtime", "registry-trust", "databases",
                  "namespaces", "cube"):
        assert first_run.done[stage]["changed"] > 0, stage
    # ... except the registry: the saved images were loaded before, each is found present.
    images = first_run.changes("images")
    assert images == [] and first_run.done["images"]["changed"] == 0
    present = [e for e in first_run.of("change") if e["stage"] == "images"]
    assert len(present) == len(e2e.images) and {e["action"] for e in present} == {"unchanged"}
    assert e2e.cli("images", "verify").of("images-verified")[0]["count"] == len(e2e.images)

    for node in e2e.nodes.values():  # the nodes as the platform needs them
        assert node.read("/etc/ceph/admin.secret").decode() == CEPH_KEY + "\n"
        assert " /data/k8s ceph " in node.read("/etc/fstab").decode()
        assert node.read(f"/etc/docker/certs.d/{e2e.registry.host}/ca.crt") == \
            e2e.registry.ca_file.read_bytes()  # the site registry's CA: every node pulls
        assert node.path("/data/k8s/infra/mysql").is_dir()
    daemon = json.loads(e2e.nodes["gpu1"].read("/etc/docker/daemon.json"))
    assert daemon["default-runtime"] == "nvidia" and daemon["log-driver"] == "json-file"
    assert docker_restarts(e2e) == 1
    databases = {row[0] for row in e2e.mariadb.query("SHOW DATABASES")} - set(SYSTEM_SCHEMAS)
    assert databases == PLATFORM_DATABASES
    assert e2e.owned(), "nothing labelled managed-by=cubeinstall in the cluster"
    # No secret value ever reaches the output.
    text = json.dumps(first_run.events) + first_run.stderr
    secrets = [value for name, value in e2e.cli.env.items() if name.startswith("E2E_")]
    assert [secret for secret in secrets if secret in text] == []


def test_status_shows_every_stage_ok_and_inputs_unchanged(e2e: Platform, first_run: Run):
    run = e2e.cli("status")
    assert run.code == 0, run.explain()
    rows = run.stage_events("stage-status")
    assert list(rows) == list(ENABLED)
    assert {(row["result"], row["inputs"]) for row in rows.values()} == {("ok", "unchanged")}


def test_the_journal_has_its_cluster_copy(e2e: Platform, first_run: Run):
    """The ConfigMap holds the same stage records as the local journal (it was never saved
    while a broad except turned a TypeError into a warning)."""
    from kubernetes import client, config

    with config.new_client_from_config(config_file=str(e2e.cluster.kubeconfig)) as api:
        copy = client.CoreV1Api(api).read_namespaced_config_map("cubeinstall-journal-e2e",
                                                                "kube-system")
    stages = json.loads(copy.data["journal.json"])["stages"]
    assert {name: record["status"] for name, record in stages.items()} == \
           {name: record["status"] for name, record in e2e.journal().items()}
    assert not [event for event in first_run.events if event.get("event") == "warning"
                and "journal" in event.get("message", "")]


def test_what_the_platform_reads_is_live_as_rendered(e2e: Platform, first_run: Run, monkeypatch):
    """The parity of tests/unit/test_parity.py holds on the live cluster: every object
    start.sh creates that this site renders is there, and for its workloads what the
    containers run and read (commands, args, ports, mounts and their sources, service
    account, node labels) survived the API server as rendered."""
    from cubeinstall.site.loader import load_site
    from cubeinstall.stages.rendered import all_objects
    from tests.unit.test_parity import workload_facts
    from tests.upstream_install import start_sh_objects

    for name, value in e2e.cli.env.items():
        monkeypatch.setenv(name, value)
    upstream = {item.key for item in start_sh_objects()}
    rendered = {}
    for objects in all_objects(load_site(e2e.site)).values():
        for obj in objects:
            meta = obj["metadata"]
            where = f"{meta['namespace']}/" if meta.get("namespace") else ""
            rendered[f"{obj['kind']} {where}{meta['name']}"] = obj
    checked = sorted(set(rendered) & upstream)
    assert len(checked) > 150, len(checked)
    with e2e.cluster.api_client() as api:
        client = e2e.cluster.dynamic_client(api)  # a discovery cache of this cluster's own
        for key in checked:
            obj = rendered[key]
            resource = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            live = resource.get(name=obj["metadata"]["name"],
                                namespace=obj["metadata"].get("namespace")).to_dict()
            if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
                assert workload_facts(live) == workload_facts(obj), key


def test_preflight_passes_and_refuses_what_the_api_server_would(e2e: Platform, first_run: Run):
    run = e2e.cli("preflight")
    assert run.code == 0, run.explain()
    findings = run.of("preflight")
    assert {f["check"] for f in findings} == PREFLIGHT_CHECKS
    assert {f["grade"] for f in findings} == {"ok"}, [f for f in findings if f["grade"] != "ok"]

    # Loopback externalIPs: the API server rejects the gateway Service; preflight says so
    # (exit 3) before anything is changed, not the gateway stage at the end of a run.
    data = yaml.safe_load(e2e.site.read_text())
    data["gateway"] = {"expose": "externalIPs", "addresses": ["127.0.0.1"]}
    loopback = e2e.workdir / "loopback-gateway.yaml"
    loopback.write_text(yaml.safe_dump(data))
    refused = e2e.cli("preflight", "-c", str(loopback), config=False)
    assert refused.code == 3, refused.explain()
    [finding] = [f for f in refused.of("preflight") if f["grade"] == "error"]
    assert finding["check"] == "gateway-exposure" and "127.0.0.1" in finding["message"]

    # A node that cannot be asked is reported with the reason, not as "not mounted".
    data = yaml.safe_load(e2e.site.read_text())
    data["ssh"]["known_hosts"] = str(e2e.workdir / "empty_known_hosts")
    strangers = e2e.workdir / "unknown-hosts.yaml"
    strangers.write_text(yaml.safe_dump(data))
    refused = e2e.cli("preflight", "--only", "pv-pvc", "-c", str(strangers), config=False)
    assert refused.code == 3, refused.explain()
    unmounted = [f for f in refused.of("preflight") if f["check"] == "storage-mounted"]
    assert unmounted and unmounted[0]["grade"] == "error"
    assert "host key not in known_hosts" in unmounted[0]["message"], unmounted


# --- 2. re-runs change nothing -----------------------------------------------------------

def test_second_run_and_forced_run_change_nothing(e2e: Platform, first_run: Run):
    assert first_run.code == 0
    before = world(e2e)
    assert len(before["cluster"]) > 200 and all(before["hosts"].values())
    second = e2e.cli("all")
    assert second.code == 0, second.explain()
    assert sorted(second.skipped) == sorted(ENABLED) and second.started == []
    assert_same_world(before, world(e2e))

    forced = e2e.cli("all", "--force")  # every stage really compares with the servers
    assert sorted(forced.started) == sorted(ENABLED)
    assert_each_stage_started_after_its_prerequisites(forced)
    no_changes(forced)
    assert_same_world(before, world(e2e))


# --- 4. one run at a time ----------------------------------------------------------------

def test_a_concurrent_run_is_refused_naming_the_holder(e2e: Platform, first_run: Run, tmp_path):
    holder = e2e.cli.start("all", "--force")
    assert holder.read_until(lambda event, _: event["event"] == "stage-start"), \
        "the first run ended before starting a stage"
    pid = f"pid {holder.process.pid}"

    same_machine = e2e.cli.start("all")  # the same state dir: the local lock answers
    other_machine = e2e.cli.start(  # another operator machine: only the Lease is shared
        "all", env={**e2e.cli.env, "CUBEINSTALL_STATE_DIR": str(tmp_path / "elsewhere")})
    same_machine, other_machine = same_machine.finish(), other_machine.finish()
    for refused in (same_machine, other_machine):
        assert refused.code != 0 and refused.started == [], refused.explain()
        [error] = refused.of("error")
        assert "being changed by another run" in error["message"] and pid in error["message"]
    assert "Lease kube-system/cubeinstall-e2e" in other_machine.of("error")[0]["message"]
    no_changes(holder.finish())


# --- 3. killed and resumed ---------------------------------------------------------------

def assert_no_half_written_files(e2e: Platform) -> None:
    deadline = time.monotonic() + 10  # a script the dead client sent may still be finishing
    while any(observe.temp_files(node) for node in e2e.nodes.values()):
        assert time.monotonic() < deadline, \
            {name: observe.temp_files(node) for name, node in e2e.nodes.items()}
        time.sleep(0.2)
    for node in e2e.nodes.values():
        assert observe.fstab_problems(node.read("/etc/fstab").decode()) == [], node.name
        secret = node.path("/etc/ceph/admin.secret")
        assert not secret.exists() or secret.read_text() == CEPH_KEY + "\n", node.name
    json.loads(e2e.nodes["gpu1"].read("/etc/docker/daemon.json"))


def test_kill_points_cover_every_layer():
    assert len(POINTS) >= 10
    assert {point.layer for point in POINTS} == {"node", "registry", "database", "cluster"}


def journaled(e2e: Platform, stage: str, since: float, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while e2e.journal().get(stage, {}).get("started", 0) < since:
        assert time.monotonic() < deadline, f"{stage} never recorded as started"
        time.sleep(0.01)


@pytest.mark.parametrize("point", POINTS, ids=str)
def test_killed_run_resumes_and_converges(e2e: Platform, first_run: Run, point: KillPoint):
    assert first_run.code == 0
    only = [arg for stage in point.only for arg in ("--only", stage)]
    if point.perturb:
        point.perturb(e2e)
    launched = time.time()
    running = e2e.cli.start("all", "--force", *only)
    assert running.read_until(point.trigger), f"the run ended before {point}"
    if point.perturb:  # never kill before the journal knows the stage started (a loaded
        journaled(e2e, point.name, launched)  # machine may stall the run between the two)
    time.sleep(point.delay)
    killed = running.kill()
    assert killed.code == -signal.SIGKILL, f"the run finished before the kill at {point}"
    in_flight = [stage for stage in killed.started if stage not in killed.done]
    print(f"{point}: killed after {len(killed.events)} events, {killed.seconds:.2f} s, in "
          f"{in_flight or 'no stage'}; last event: {killed.events[-1]}")
    assert_no_half_written_files(e2e)

    journal = {stage: record["status"] for stage, record in e2e.journal().items()}
    assert {journal[stage] for stage in killed.done} <= {"ok"}  # recorded before it is said
    unfinished = [stage for stage in point.only or ENABLED if journal.get(stage) != "ok"]
    if point.perturb:  # its stage repaired what was undone, or will run again
        assert point.name in killed.done or point.name in unfinished, journal

    resumed = e2e.cli("all", *only)  # no --force: the journal decides what runs again
    assert resumed.code == 0, resumed.explain()
    assert sorted(resumed.started) == sorted(unfinished), (killed.started, list(killed.done),
                                                           journal)
    assert set(killed.done) <= set(resumed.skipped)

    converged = e2e.cli("all", "--force", *only)
    no_changes(converged, point.only or ENABLED)
    assert_no_half_written_files(e2e)
    if point.converged:
        point.converged(e2e)


# --- 5. uninstall ------------------------------------------------------------------------

DATA_KINDS = ("/PersistentVolume/", "/PersistentVolumeClaim/")


def settled(e2e: Platform, expected: set[str], seconds: float = 120) -> set[str]:
    """The owned objects once they are ``expected`` (pods, replica sets and namespaces go
    asynchronously), or what is left at the deadline."""
    deadline = time.monotonic() + seconds
    while set(left := e2e.owned()) != expected and time.monotonic() < deadline:
        time.sleep(1)
    return set(left)


def test_uninstall_removes_everything_but_the_data(e2e: Platform, first_run: Run):
    """Everything cubeinstall installed goes; the data stays: volumes and their claims
    (with the namespaces holding those claims), the databases, every file on the nodes.
    What stays is no longer labelled managed-by=cubeinstall but kept-from-stage, which
    --purge finds: it removes the claims and namespaces and drops the databases;
    PersistentVolumes with reclaimPolicy Retain are the only objects left, for a person
    to delete."""
    assert first_run.code == 0
    installed = set(e2e.owned())
    data = {key for key in installed if any(kind in key for kind in DATA_KINDS)}
    holding = {f"/Namespace//{key.split('/')[2]}" for key in data if "/PersistentVolumeClaim/" in key}
    volumes = retained_volume_paths(e2e)
    retained = {f"/PersistentVolume//{name}" for name in retained_volume_names(e2e)}
    assert data and holding and volumes and retained <= data
    for path in volumes:  # what the platform's pods would have written there
        e2e.nodes["node1"].write(f"{path}/e2e-user-data", path.encode())
    files = e2e.host_files()

    run = e2e.cli("--yes", "uninstall")
    assert run.code == 0, run.explain()
    assert [e["stage"] for e in run.of("stage-removed")] == list(reversed(ENABLED))
    left = settled(e2e, set())
    assert not left, f"still labelled managed-by=cubeinstall: {sorted(left)}"
    kept = e2e.kept()
    assert kept == data | holding, f"kept but not data: {sorted(kept - data - holding)}; " \
                                   f"data lost: {sorted(data | holding - kept)}"
    assert PLATFORM_DATABASES <= {row[0] for row in e2e.mariadb.query("SHOW DATABASES")}
    assert e2e.host_files() == files  # /data/k8s, fstab, Ceph secret, daemon.json: all kept
    assert e2e.journal() == {}

    purged = e2e.cli("--yes", "uninstall", "--purge")
    assert purged.code == 0, purged.explain()
    deadline = time.monotonic() + 120
    while e2e.kept() != retained and time.monotonic() < deadline:
        time.sleep(1)
    assert e2e.kept() == retained
    assert not e2e.owned()
    assert PLATFORM_DATABASES & {row[0] for row in e2e.mariadb.query("SHOW DATABASES")} == set()
    assert e2e.host_files() == files  # --purge never wipes /data/k8s


def _volumes(e2e: Platform) -> list:
    from kubernetes import client

    with e2e.cluster.api_client() as api:
        return client.CoreV1Api(api).list_persistent_volume(label_selector=observe.MANAGED).items


def retained_volume_paths(e2e: Platform) -> list[str]:
    return sorted(v.spec.host_path.path for v in _volumes(e2e)
                  if v.spec.persistent_volume_reclaim_policy == "Retain" and v.spec.host_path)


def retained_volume_names(e2e: Platform) -> set[str]:
    return {v.metadata.name for v in _volumes(e2e)
            if v.spec.persistent_volume_reclaim_policy == "Retain"}


def test_install_after_purge_gives_the_kept_volumes_back(e2e: Platform, first_run: Run):
    """After uninstall --purge, `all` installs again: every Retain volume kept from the
    first install (Released, still holding the old claim's uid) is bound to its new claim,
    with the files written there before the uninstall."""
    assert first_run.code == 0
    kept = {key.rsplit("/", 1)[1] for key in e2e.kept()}
    assert kept, "the uninstall test leaves the Retain volumes behind"
    run = e2e.cli("all")
    assert run.code == 0, run.explain()
    bound = {v.metadata.name: v.status.phase for v in _volumes(e2e)}
    assert {name: bound.get(name) for name in kept} == {name: "Bound" for name in kept}
    assert e2e.kept() == set()  # managed again, no longer marked as kept
    for path in retained_volume_paths(e2e):
        assert e2e.nodes["node1"].read(f"{path}/e2e-user-data") == path.encode()
