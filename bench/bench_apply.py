"""Benchmark: the apply engine vs `kubectl apply --server-side` on the same objects.

A few hundred rendered objects (ConfigMaps, Services, Deployments,
ServiceAccounts, Roles across a few namespaces) are applied by each tool to its
own fresh local control plane (tests/cluster), started and left to settle
(its processes idle) before the clock starts, with cold discovery caches as on
a first install: kubectl of the same Kubernetes version as the control plane,
and the engine, in alternating order over a few rounds (this machine is shared:
medians damp the noise). Then each tool applies the same objects again (no-op).
Printed: wall times, the ratio engine / kubectl (target <= 0.5), the no-op
re-run times, and the CPU the control plane and the client used together.

The engine runs without readiness gates for the comparison, since kubectl
apply does not wait either; the time with gates (rollouts of every
Deployment waited for) is printed too.

    python bench/bench_apply.py [--namespaces 5] [--per-kind 12] [--workers 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cubeinstall.core.yamlio import dump_documents
from cubeinstall.kube.apply import Engine, Options
from cubeinstall.kube.client import KubeClient
from tests.cluster import build
from tests.cluster.controlplane import ControlPlane
from tests.cluster.nodes import DEFAULT_NODES, FakeNode


def rendered_objects(prefix: str, namespaces: int, per_kind: int) -> list[dict]:
    objects: list[dict] = []
    for n in range(namespaces):
        ns = f"{prefix}-{n}"
        objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for i in range(per_kind):
            name, labels = f"app-{i}", {"app": f"app-{i}", "tier": "bench"}
            meta = {"name": name, "namespace": ns, "labels": labels}
            objects += [
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                 "data": {"config.py": f"# settings of {name}\n" + "OPTION = 1\n" * 40,
                          "level": "info"}},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
                 "rules": [{"apiGroups": [""], "resources": ["configmaps", "pods"],
                            "verbs": ["get", "list", "watch"]}]},
                {"apiVersion": "v1", "kind": "Service", "metadata": meta,
                 "spec": {"selector": labels, "ports": [{"name": "http", "port": 80,
                                                         "targetPort": 8080}]}},
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                 "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                          "template": {"metadata": {"labels": labels}, "spec": {
                              "serviceAccountName": name,
                              "containers": [{"name": "app", "image": f"example.com/{name}:1",
                                              "ports": [{"containerPort": 8080}],
                                              "resources": {"requests": {"cpu": "10m"}}}]}}}},
            ]
    return objects


def roomy_nodes() -> tuple[FakeNode, ...]:
    """The default fake nodes, with room for every pod of every round (no scheduler churn)."""
    return tuple(replace(node, capacity={**node.capacity, "pods": "2000"}) for node in DEFAULT_NODES)


def timed(call) -> tuple[float, object]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def cpu_seconds(pids: list[int]) -> float:
    """CPU used so far by these processes, this one and its finished children (kubectl)."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return total + own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(call, pids: list[int]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the control plane and the client together)."""
    before = cpu_seconds(pids)
    wall, _ = timed(call)
    return wall, cpu_seconds(pids) - before


def run_engine(kubeconfig: Path, objects: list[dict], *, gates: bool, workers: int):
    engine = Engine(KubeClient.from_kubeconfig(kubeconfig), "bench",
                    Options(gates=gates, workers=workers, object_seconds=600))
    try:
        return engine.run(objects, dry_run=False)
    finally:
        engine.close()


def run_kubectl(kubectl: Path, kubeconfig: Path, manifest: Path, cache_dir: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    subprocess.run([str(kubectl), "apply", "--server-side", "--field-manager=bench",
                    f"--cache-dir={cache_dir}", "-f", str(manifest)],
                   env=env, check=True, stdout=subprocess.DEVNULL)


def wait_quiet(pids: list[int], *, below: float = 0.05, window: float = 0.5,
               limit: float = 30.0) -> None:
    """Until the control plane's processes use less than ``below`` of a core: a fresh
    cluster's start-up work (bootstrap RBAC, service accounts, node leases) would
    otherwise land in whichever tool runs first."""
    ends = time.monotonic() + limit
    while time.monotonic() < ends:
        before = cpu_seconds(pids)
        time.sleep(window)
        if cpu_seconds(pids) - before < below * window:
            return


def fresh_cluster(tmp: Path, tools, name: str) -> ControlPlane:
    cluster = ControlPlane(tmp / name, roomy_nodes(), tools=tools).start()
    wait_quiet(list(cluster.pids.values()))
    return cluster


def first_and_again(tmp: Path, tools, name: str, call) -> tuple[float, float, float]:
    """(first apply wall, its CPU, no-op re-run wall) on a fresh control plane, cold caches."""
    cluster = fresh_cluster(tmp, tools, name)
    try:
        pids = list(cluster.pids.values())
        wall, busy = measured(lambda: call(cluster.kubeconfig), pids)
        return wall, busy, timed(lambda: call(cluster.kubeconfig))[0]
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=5)
    parser.add_argument("--per-kind", type=int, default=12)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tools = build.ensure(build=False)
    kubectl = tools.binary("kubectl")
    objects = rendered_objects("bench", args.namespaces, args.per_kind)
    print(f"{len(objects)} objects; Kubernetes {tools.version}; engine workers {args.workers}; "
          f"{args.rounds} rounds, each tool on its own fresh control plane, alternating; medians")
    times: dict[str, list[float]] = {key: [] for key in
                                     ("kubectl", "kubectl-noop", "engine", "engine-noop")}
    cpu: dict[str, list[float]] = {"kubectl": [], "engine": []}
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp_name:
        tmp = Path(tmp_name)
        manifest = tmp / "objects.yaml"
        manifest.write_text(dump_documents(objects))
        # Both tools start with cold discovery caches, as on a first install.
        os.environ["XDG_CACHE_HOME"] = str(tmp / "xdg-cache")
        tools_by_name = {
            "kubectl": lambda kubeconfig: run_kubectl(kubectl, kubeconfig, manifest,
                                                      tmp / "kube-cache" / kubeconfig.parent.name),
            "engine": lambda kubeconfig: run_engine(kubeconfig, objects, gates=False,
                                                    workers=args.workers)}
        for round_ in range(args.rounds):
            order = list(tools_by_name) if round_ % 2 == 0 else list(reversed(tools_by_name))
            for name in order:
                wall, busy, again = first_and_again(tmp, tools, f"{name}-{round_}",
                                                    tools_by_name[name])
                times[name].append(wall)
                cpu[name].append(busy)
                times[f"{name}-noop"].append(again)
        engine_gated = first_and_again(tmp, tools, "gated", lambda kubeconfig: run_engine(
            kubeconfig, objects, gates=True, workers=args.workers))[0]
    median = {key: statistics.median(values) for key, values in times.items()}
    ratio = median["engine"] / median["kubectl"]
    cores = os.cpu_count() or 1
    print(f"{'':30}{'first apply':>12}{'no-op re-run':>14}{'CPU used':>10}{'floor':>8}"
          "   (first apply, all rounds)")
    for label, key in (("kubectl apply --server-side", "kubectl"), ("cubeinstall engine", "engine")):
        rounds = " ".join(f"{t:.2f}" for t in times[key])
        busy = statistics.median(cpu[key])
        print(f"{label:30}{median[key]:>11.2f}s{median[key + '-noop']:>13.2f}s{busy:>9.2f}s"
              f"{busy / cores:>7.2f}s   ({rounds})")
    print(f"{'engine, waiting for rollouts':30}{engine_gated:>11.2f}s")
    print(f"ratio engine/kubectl, first apply: {ratio:.2f} (target <= 0.5): "
          f"{'met' if ratio <= 0.5 else 'MISSED'}")
    print(f"ratio engine/kubectl, no-op re-run: {median['engine-noop'] / median['kubectl-noop']:.2f}")
    print(f"CPU used = control plane + client during the first apply; floor = CPU used / {cores} "
          "cores, the fastest any client could finish on this machine (the control plane "
          "shares its cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
