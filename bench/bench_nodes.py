"""Benchmark: node-prep + storage (CephFS) on 1, 8 and 32 sandboxed sshd nodes.

Prints the wall time of a first run (everything changes) and a second run
(nothing changes) per node count, and the ratio 32 nodes / 1 node; the target
is <= 3x, i.e. the hosts really run in parallel. Each run is one run context,
as one CLI invocation: one SSH connection per host, shared by both stages, and
closed (untimed) before the next run. With --rounds N every count is measured
N times on fresh nodes and the medians are shown. Needs root, openssh-server,
sudo and util-linux (see tests/servers/sshd.py).

The nodes' sshd run on the same machine as the installer, so a large run is
bound by this machine's cores, not by waiting on hosts: next to each wall time
the machine's busy CPU seconds during the run (all processes, including other
load) and that CPU divided by the number of cores, the fastest any scheduler
could finish that work here. A wall time close to that floor means the hosts
did run in parallel. Per host: the CPU of the installer process and of the
node (its sshd, session and every process the scripts started), which a real
node would spend on its own cores. A single node is bound by latency instead
(handshake, round trips), so the ratio also grows when one host gets faster.

    python bench/bench_nodes.py [--counts 1,8,32] [--parallel 32] [--rounds 1]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cubeinstall.core.context import RunContext, RunOptions
from cubeinstall.core.output import Output
from cubeinstall.remote.pool import pool_for
from cubeinstall.stages import node_prep, storage
from tests.servers.sshd import NodeFactory, NodeSpec, client_keypair, make_site, trust

CEPH = {"type": "cephfs", "monitors": ["10.0.0.31:6789", "10.0.0.32:6789"], "user": "admin",
        "secret": "AQBbenchmarkKey=="}
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    wall: float
    machine_cpu: float  # seconds, all processes
    installer_ms: float  # per host
    node_ms: float  # per host


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (user+system, all cores) since boot."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # minus idle, iowait


def installer_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def node_cpu_seconds(nodes) -> float:
    """CPU of the nodes' sshd, including every session process they have reaped."""
    total = 0
    for node in nodes:
        fields = Path(f"/proc/{node.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def wait_sessions_reaped(nodes, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    for node in nodes:
        children = Path(f"/proc/{node.process.pid}/task/{node.process.pid}/children")
        while children.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.02)


def run_stages(site, nodes) -> Run:
    """node-prep + storage in one run context, as one CLI invocation."""
    ctx = RunContext(site, Output(json_mode=True, stream=io.StringIO()), RunOptions())
    node_cpu = node_cpu_seconds(nodes)
    started, cpu, own = time.monotonic(), busy_cpu_seconds(), installer_cpu_seconds()
    node_prep.apply(ctx)
    storage.apply(ctx)
    wall, cpu, own = time.monotonic() - started, busy_cpu_seconds() - cpu, installer_cpu_seconds() - own
    pool_for(ctx).close()  # what the CLI's exit does; not timed
    wait_sessions_reaped(nodes)
    count = len(nodes)
    return Run(wall, cpu, own * 1000 / count, (node_cpu_seconds(nodes) - node_cpu) * 1000 / count)


def measure(count: int, parallel: int, workdir: Path, key: Path) -> tuple[Run, Run]:
    factory = NodeFactory(workdir, key)
    try:
        nodes = factory.start(count, NodeSpec(swap=True))
        trust(nodes, workdir / "known_hosts")
        site = make_site(nodes, workdir, key, storage=CEPH,
                         ssh={"parallel": parallel, "known_hosts": str(workdir / "known_hosts")})
        return run_stages(site, nodes), run_stages(site, nodes)
    finally:
        factory.stop_all()


def median(runs: list[Run]) -> Run:
    return Run(*(statistics.median(values) for values in zip(*(
        (r.wall, r.machine_cpu, r.installer_ms, r.node_ms) for r in runs))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,8,32")
    parser.add_argument("--parallel", type=int, default=32, help="ssh.parallel (pool size)")
    parser.add_argument("--rounds", type=int, default=1, help="fresh nodes per count; medians")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    cores = os.cpu_count() or 1
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as tmp:
        workdir = Path(tmp)
        key = client_keypair(workdir / "client")
        for count in counts:
            rounds = [measure(count, args.parallel, workdir / f"n{count}-{i}", key)
                      for i in range(args.rounds)]
            results[count] = [median([r[i] for r in rounds]) for i in (0, 1)]
            cells = [f"{label} {r.wall:5.2f}s (machine CPU {r.machine_cpu:5.2f}s, floor "
                     f"{r.machine_cpu / cores:5.2f}s; per host: installer {r.installer_ms:4.1f} ms, "
                     f"node {r.node_ms:5.1f} ms)"
                     for label, r in zip(("first run", "second run"), results[count])]
            print(f"{count:3d} nodes: " + "   ".join(cells), flush=True)
    if 1 in results and len(results) > 1:
        largest = max(results)
        for label, index in (("first run", 0), ("second run (no changes)", 1)):
            ratio = results[largest][index].wall / results[1][index].wall
            print(f"ratio {largest}/1 nodes, {label}: {ratio:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
