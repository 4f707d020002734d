"""Benchmark: node-prep + storage (CephFS) on 1 to 128 sandboxed sshd nodes over a link with latency.

Each node is reached over a link with a round trip of 1, 20 or 100 ms (--rtts;
tests/servers/link_delay.py delays every packet to and from its sshd, the TCP
handshake included). Prints, per round trip and node count, the wall time of
a first run (everything changes) and a second run (nothing changes), the
measured round trip (TCP connect), and the ratio N nodes / 1 node; targets at
20 ms: 32 nodes <= 1.5x, 128 nodes <= 4x one node, with ssh.parallel >= the
node count (--parallel, default the largest count). Each run is one run
context, as one CLI invocation: one SSH connection per host, shared by both
stages, and closed (untimed) before the next run. With --rounds N every count
is measured N times on fresh nodes and the medians are shown. Needs root,
openssh-server, sudo, util-linux and iptables (see tests/servers/sshd.py).

The nodes' sshd run on the same machine as the installer, so a large run is
bound by this machine's cores, not by waiting on hosts: next to each wall time
the machine's busy CPU seconds during the run (all processes, including other
load and the delay process) and that CPU divided by the number of cores, the
fastest any scheduler could finish that work here. Per host: the CPU of the
installer process (target <= 10 ms, first run) and of the node (its sshd,
session and every process the scripts started), which a real node would spend
on its own cores. While the first run's connections are still open: memory
(PSS) of each node's sshd and its session processes, and the installer's open
file descriptors and resident memory per open session.

    python bench/bench_nodes.py [--counts 1,8,32,128] [--rtts 1,20,100] [--parallel N] [--rounds 1]
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
from tests.servers.link_delay import connect_seconds
from tests.servers.sshd import NodeFactory, NodeSpec, client_keypair, make_site, trust

CEPH = {"type": "cephfs", "monitors": ["10.0.0.31:6789", "10.0.0.32:6789"], "user": "admin",
        "secret": "AQBbenchmarkKey=="}
TICK = os.sysconf("SC_CLK_TCK")
TARGETS = {32: 1.5, 128: 4.0}  # at 20 ms round trip: N nodes <= this x one node


@dataclass(frozen=True)
class Run:
    wall: float
    machine_cpu: float  # seconds, all processes
    delay_cpu: float  # seconds, the link delay process (a real network costs us nothing)
    installer_ms: float  # per host
    node_ms: float  # per host


@dataclass(frozen=True)
class Open:
    """What the first run's open connections hold, per host."""

    node_mib: float  # PSS of a node's sshd and its session processes
    node_fds: float  # their open file descriptors
    installer_fds: float  # file descriptors the installer opened (and holds)
    installer_kib: float  # growth of the installer's resident memory during the first run


@dataclass(frozen=True)
class Measured:
    rtt_ms: float  # median TCP connect time to the nodes
    first: Run
    second: Run
    open: Open


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (user+system, all cores) since boot."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # minus idle, iowait


def installer_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int, children: bool = True) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15 if children else 13]) / TICK  # utime stime [cutime cstime]


def node_cpu_seconds(nodes) -> float:
    """CPU of the nodes' sshd, including every session process they have reaped."""
    return sum(process_cpu_seconds(node.process.pid) for node in nodes)


def children(pid: int) -> list[int]:
    """All descendants of ``pid`` that still exist (one may end while they are listed)."""
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *children(int(child))]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descriptors(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return 0


def resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_sessions_reaped(nodes, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    for node in nodes:
        while children(node.process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def run_stages(site, nodes, factory) -> tuple[Run, Open]:
    """node-prep + storage in one run context, as one CLI invocation."""
    ctx = RunContext(site, Output(json_mode=True, stream=io.StringIO()), RunOptions())
    delay = factory.link_delay
    node_cpu, delay_cpu = node_cpu_seconds(nodes), delay.cpu_seconds() if delay else 0
    rss, fds = resident_kib(), len(os.listdir("/proc/self/fd"))
    started, cpu, own = time.monotonic(), busy_cpu_seconds(), installer_cpu_seconds()
    node_prep.apply(ctx)
    storage.apply(ctx)
    wall, cpu, own = time.monotonic() - started, busy_cpu_seconds() - cpu, installer_cpu_seconds() - own
    count = len(nodes)
    pids = [pid for n in nodes for pid in [n.process.pid, *children(n.process.pid)]]
    held = Open(sum(map(pss_kib, pids)) / 1024 / count, sum(map(descriptors, pids)) / count,
                (len(os.listdir("/proc/self/fd")) - fds) / count, (resident_kib() - rss) / count)
    delay_cpu = (delay.cpu_seconds() if delay else 0) - delay_cpu
    pool_for(ctx).close()  # what the CLI's exit does; not timed
    wait_sessions_reaped(nodes)
    return (Run(wall, cpu, delay_cpu, own * 1000 / count, (node_cpu_seconds(nodes) - node_cpu) * 1000 / count),
            held)


def measure(count: int, rtt_ms: float, parallel: int, workdir: Path, key: Path) -> Measured:
    factory = NodeFactory(workdir, key, rtt_ms=rtt_ms)
    try:
        nodes = factory.start(count, NodeSpec(swap=True))
        trust(nodes, workdir / "known_hosts")
        site = make_site(nodes, workdir, key, storage=CEPH,
                         ssh={"parallel": parallel, "known_hosts": str(workdir / "known_hosts")})
        rtt = statistics.median(connect_seconds(n.address, n.port) for n in nodes[:8]) * 1000
        (first, held), (second, _) = run_stages(site, nodes, factory), run_stages(site, nodes, factory)
        return Measured(rtt, first, second, held)
    finally:
        factory.stop_all()


def median(measured: list[Measured]) -> Measured:
    def of(items, kind):
        return kind(*(statistics.median(values) for values in zip(*(vars(i).values() for i in items))))

    return Measured(statistics.median(m.rtt_ms for m in measured), of([m.first for m in measured], Run),
                    of([m.second for m in measured], Run), of([m.open for m in measured], Open))


def report(count: int, m: Measured, cores: int) -> str:
    cells = [f"{label} {r.wall:5.2f}s (machine CPU {r.machine_cpu:5.2f}s of which link delay "
             f"{r.delay_cpu:4.2f}s, floor {r.machine_cpu / cores:5.2f}s; per host: installer "
             f"{r.installer_ms:4.1f} ms, node {r.node_ms:5.1f} ms)"
             for label, r in (("first", m.first), ("no-op", m.second))]
    held = (f"open: node {m.open.node_mib:4.1f} MiB {m.open.node_fds:4.1f} fds, installer {m.open.installer_fds:4.1f} fds "
            f"{m.open.installer_kib:5.0f} KiB per host")
    return f"{count:3d} nodes, rtt {m.rtt_ms:6.1f} ms: " + "   ".join(cells) + "   " + held


def our_cpu(run: Run, count: int) -> float:
    """CPU seconds of this workload alone: installer, nodes and the link delay."""
    return (run.installer_ms + run.node_ms) * count / 1000 + run.delay_cpu


def tables(results: dict[float, dict[int, Measured]], cores: int) -> str:
    """The figures as markdown tables, for bench/RESULTS.md."""
    rows = [("| round trip (measured) | nodes | first run | / 1 node | target | limit | / limit "
             "| no-op run | / 1 node | installer CPU per host, first / no-op | node CPU per host (first) |"),
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rtt, by_count in results.items():
        one = by_count.get(1)
        for count, m in by_count.items():
            limit = max(one.first.wall if one else 0, our_cpu(m.first, count) / cores)
            first, again = ((f"{m.first.wall / one.first.wall:.2f}x", f"{m.second.wall / one.second.wall:.2f}x")
                            if one else ("", ""))
            target = f"<= {TARGETS[count]}x" if rtt == 20 and count in TARGETS else ""
            rows.append(
                f"| {rtt:g} ms ({m.rtt_ms:.1f} ms) | {count} | {m.first.wall:.2f} s | {first} | {target} | "
                f"{limit:.2f} s | {m.first.wall / limit:.2f}x | {m.second.wall:.2f} s | {again} | "
                f"{m.first.installer_ms:.1f} / {m.second.installer_ms:.1f} ms | {m.first.node_ms:.0f} ms |")
    rows += ["", ("| round trip | nodes | node: memory (PSS of sshd + session), descriptors "
                  "| installer: descriptors, memory | machine CPU (first run; all processes) |"),
             "|---|---|---|---|---|"]
    for rtt, by_count in results.items():
        for count, m in by_count.items():
            rows.append(f"| {rtt:g} ms | {count} | {m.open.node_mib:.1f} MiB, {m.open.node_fds:.0f} per node | "
                        f"{m.open.installer_fds:.1f}, {m.open.installer_kib:.0f} KiB per host | "
                        f"{m.first.machine_cpu:.2f} s (link delay {m.first.delay_cpu:.2f} s) |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,8,32,128")
    parser.add_argument("--rtts", default="1,20,100", help="round trips to the nodes, ms (0: none)")
    parser.add_argument("--parallel", type=int, help="ssh.parallel (default: the largest count)")
    parser.add_argument("--rounds", type=int, default=1, help="fresh nodes per count; medians")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    parallel = args.parallel or max(counts)
    cores = os.cpu_count() or 1
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {cores} cores, load average at "
          f"start {', '.join(f'{v:.2f}' for v in os.getloadavg())}, ssh.parallel {parallel}", flush=True)
    results: dict[float, dict[int, Measured]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as tmp:
        workdir = Path(tmp)
        key = client_keypair(workdir / "client")
        for rtt in (float(r) for r in args.rtts.split(",")):
            results[rtt] = {}
            for count in counts:
                results[rtt][count] = median([measure(count, rtt, parallel, workdir / f"r{rtt}-n{count}-{i}", key)
                                              for i in range(args.rounds)])
                print(report(count, results[rtt][count], cores), flush=True)
    print(f"load average at the end {', '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print(tables(results, cores))


if __name__ == "__main__":
    main()
