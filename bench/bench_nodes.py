"""Benchmark: node-prep + storage (CephFS) on 1, 8 and 32 sandboxed sshd nodes.

Prints the wall time of a first run (everything changes) and a second run
(nothing changes) per node count, and the ratio 32 nodes / 1 node; the target
is <= 3x, i.e. the hosts really run in parallel. Needs root, openssh-server,
sudo and util-linux (see tests/servers/sshd.py).

The nodes' sshd run on the same machine as the installer, so a large run is
bound by this machine's cores, not by waiting on hosts: next to each wall time
the machine's busy CPU seconds during the run (all processes, including other
load) and that CPU divided by the number of cores, the fastest any scheduler
could finish that work here. A wall time close to that floor means the hosts
did run in parallel.

    python bench/bench_nodes.py [--counts 1,8,32] [--parallel 32]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cubeinstall.output import Output
from cubeinstall.stages import node_prep, storage
from cubeinstall.stages.base import RunContext, RunOptions
from tests.servers.sshd import NodeFactory, NodeSpec, client_keypair, make_site, trust

CEPH = {"type": "cephfs", "monitors": ["10.0.0.31:6789", "10.0.0.32:6789"], "user": "admin",
        "secret": "AQBbenchmarkKey=="}


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (user+system, all cores) since boot."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def run_stages(site) -> tuple[float, float]:
    """(wall seconds, machine CPU seconds) of node-prep + storage."""
    ctx = RunContext(site, Output(json_mode=True, stream=io.StringIO()), RunOptions())
    started, cpu = time.monotonic(), busy_cpu_seconds()
    node_prep.apply(ctx)
    storage.apply(ctx)
    return time.monotonic() - started, busy_cpu_seconds() - cpu


def measure(count: int, parallel: int, workdir: Path, key: Path):
    factory = NodeFactory(workdir / f"n{count}", key)
    try:
        nodes = factory.start(count, NodeSpec(swap=True))
        trust(nodes, workdir / f"known_hosts{count}")
        site = make_site(nodes, workdir, key, storage=CEPH,
                         ssh={"parallel": parallel, "known_hosts": str(workdir / f"known_hosts{count}")})
        return run_stages(site), run_stages(site)
    finally:
        factory.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,8,32")
    parser.add_argument("--parallel", type=int, default=32, help="ssh.parallel (pool size)")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    cores = os.cpu_count() or 1
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as tmp:
        workdir = Path(tmp)
        key = client_keypair(workdir / "client")
        for count in counts:
            results[count] = measure(count, args.parallel, workdir, key)
            cells = [f"{label} {wall:5.2f}s (machine CPU {cpu:5.2f}s, floor {cpu / cores:5.2f}s)"
                     for label, (wall, cpu) in zip(("first run", "second run"), results[count])]
            print(f"{count:3d} nodes: " + "   ".join(cells), flush=True)
    if 1 in results and len(results) > 1:
        largest = max(results)
        for label, index in (("first run", 0), ("second run (no changes)", 1)):
            ratio = results[largest][index][0] / results[1][index][0]
            print(f"ratio {largest}/1 nodes, {label}: {ratio:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
