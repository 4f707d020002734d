"""Where the kill tests SIGKILL `cubeinstall all`, and what they undo first so that the
killed stage has real writes in flight (a stage with nothing to do cannot half-write).

A point runs `all --force --only <stages>` (after ``perturb``), waits for its trigger
event and, for a perturbed stage, until the journal records that stage as started (its
record is written just after the stage-start event: a kill in between would leave the
old "ok" record, and the re-run would rightly skip the stage), optionally sleeps (node
stages report nothing until they finish), and kills. Stages that finished before the
kill are recorded ok and skipped by the re-run; the one in flight runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.e2e.conftest import GPU_DAEMON_JSON, Platform
from tests.servers.sshd import DEFAULT_FSTAB, SHIM_STATE, SWAPS_HEADER

NODE_STAGES = ("node-prep", "storage", "gpu-runtime", "registry-trust")
Trigger = Callable[[dict, list[dict]], bool]


@dataclass(frozen=True)
class KillPoint:
    name: str  # the stage the kill aims at (and that ``perturb`` gives work), or a moment
    layer: str
    only: tuple[str, ...]  # () = every stage
    trigger: Trigger
    delay: float = 0.0  # seconds between the trigger event and the kill
    perturb: Callable[[Platform], None] | None = None
    converged: Callable[[Platform], None] | None = None  # asserts more than "no changes"

    def __str__(self) -> str:
        return self.name


def preflight_event(count: int) -> Trigger:
    return lambda event, events: sum(e["event"] == "preflight" for e in events) == count


def in_stage(stage: str, after: int = 0) -> Trigger:
    """The ``after``-th event following ``stage``'s stage-start (0: the start itself)."""
    def trigger(event: dict, events: list[dict]) -> bool:
        starts = [i for i, e in enumerate(events) if e["event"] == "stage-start"
                  and e["stage"] == stage]
        return bool(starts) and len(events) - 1 - starts[0] == after
    return trigger


def nth_stage_start(count: int, after: int = 1) -> Trigger:
    def trigger(event: dict, events: list[dict]) -> bool:
        starts = [i for i, e in enumerate(events) if e["event"] == "stage-start"]
        return len(starts) >= count and len(events) - 1 - starts[count - 1] == after
    return trigger


# --- perturbations: undo a stage's work behind its back -----------------------------------

def swap_back_on(e2e: Platform) -> None:
    """Swap on again on node2, and its swapoff held so that the kill lands mid-stage."""
    node = e2e.nodes["node2"]
    node.write("/etc/fstab", node.read("/etc/fstab") + b"/swapfile none swap sw 0 0\n")
    node.write(f"{SHIM_STATE}/swaps",
               (SWAPS_HEADER + "/swapfile\t\t\t\tfile\t\t1048572\t\t0\t\t-2\n").encode())
    node.write(f"{SHIM_STATE}/hold-swapoff", b"20")


def storage_forgotten(e2e: Platform) -> None:
    """fstab and the CephFS secret as before the install, and node1's mount table read
    that follows the stage's writes (the secret exists again) held long enough for the
    kill to land after the files are written, before the stage ends."""
    for node in e2e.nodes.values():
        node.write("/etc/fstab", DEFAULT_FSTAB.encode())
        node.path("/etc/ceph/admin.secret").unlink(missing_ok=True)
    e2e.nodes["node1"].write(f"{SHIM_STATE}/hold-findmnt", b"20 /etc/ceph/admin.secret")


def daemon_json_reset(e2e: Platform) -> None:
    """daemon.json as before the install, and docker's restart held long enough for the
    kill to land after the new file is written, before docker runs with it."""
    import json

    node = e2e.nodes["gpu1"]
    node.write("/etc/docker/daemon.json", json.dumps(GPU_DAEMON_JSON).encode())
    node.write(f"{SHIM_STATE}/hold-docker", b"20")


def docker_runs_new_config(e2e: Platform) -> None:
    """Killed between writing daemon.json and restarting docker, the re-run still restarts it."""
    node = e2e.nodes["gpu1"]
    assert node.read(f"{SHIM_STATE}/docker-running.json") == node.read("/etc/docker/daemon.json")


def database_dropped(e2e: Platform) -> None:
    e2e.mariadb.query("DROP DATABASE IF EXISTS cachedb")
    e2e.mariadb.query("DROP USER IF EXISTS 'cube'@'%'")


def deleting(stage: str, *resources: str) -> Callable[[Platform], None]:
    """Delete the stage's owned objects of these kinds (secrets, configmaps, deployments)."""
    def perturb(e2e: Platform) -> None:
        from kubernetes import client

        selector = f"cubeinstall.io/stage={stage}"
        with e2e.cluster.api_client() as api:
            core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
            kinds = {"secrets": (core.list_secret_for_all_namespaces, core.delete_namespaced_secret),
                     "configmaps": (core.list_config_map_for_all_namespaces,
                                    core.delete_namespaced_config_map),
                     "deployments": (apps.list_deployment_for_all_namespaces,
                                     apps.delete_namespaced_deployment)}
            for resource in resources:
                listing, delete = kinds[resource]
                items = listing(label_selector=selector).items
                assert items, f"no {resource} of stage {stage} to delete"
                for item in items:
                    delete(item.metadata.name, item.metadata.namespace)
    return perturb


POINTS = (
    KillPoint("preflight", "node", NODE_STAGES, preflight_event(1)),
    KillPoint("node-prep", "node", NODE_STAGES, in_stage("node-prep"), 0.02, swap_back_on),
    KillPoint("storage", "node", NODE_STAGES, in_stage("storage"), 0.3, storage_forgotten),
    KillPoint("gpu-runtime", "node", ("gpu-runtime",), in_stage("gpu-runtime"), 0.25,
              daemon_json_reset, docker_runs_new_config),
    KillPoint("images", "registry", ("images",), in_stage("images", after=5)),
    KillPoint("databases", "database", ("databases",), in_stage("databases", after=2),
              perturb=database_dropped),
    KillPoint("namespaces", "cluster", ("namespaces", "node-labels", "dashboard"),
              in_stage("namespaces", after=5), perturb=deleting("namespaces", "secrets")),
    KillPoint("kubeflow", "cluster", ("istio", "ingress", "kubeflow"), in_stage("kubeflow", after=8),
              perturb=deleting("kubeflow", "configmaps", "deployments")),
    KillPoint("prometheus", "cluster", ("prometheus", "efk"), in_stage("prometheus", after=12),
              perturb=deleting("prometheus", "configmaps", "deployments")),
    KillPoint("cube", "cluster", ("kubeconfig", "pv-pvc", "cube", "gateway"),
              in_stage("cube", after=3), perturb=deleting("cube", "configmaps", "deployments")),
    KillPoint("whole-run", "cluster", (), nth_stage_start(12)),
)
