"""`scripts/testcluster`: the test cluster as a long-lived local service.

    scripts/testcluster up       # build if needed, start, print KUBECONFIG
    scripts/testcluster up --real-node [--real-node-label mysql=true ...]
                                 # plus a real kubelet + containerd node (realnode.py)
    eval "$(scripts/testcluster env)"
    kubectl get nodes            # or: pytest (reuses it through CUBEINSTALL_TEST_KUBECONFIG)
    scripts/testcluster status
    scripts/testcluster down

The processes started by `up` outlive the command (each runs in its own
session); their PIDs, the etcd dir and the kubeconfig are recorded in
``<run dir>/state.json`` so `down` and `status` -- separate processes --
can find them.  Run dir: CUBEINSTALL_TESTCLUSTER_RUN, else
``~/.cache/cubeinstall/testcluster/run``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from . import build
from .controlplane import STATE_FILE, ControlPlane, ControlPlaneError
from .processes import ProcessError
from .realnode import RealNodeSpec


def run_dir() -> Path:
    override = os.environ.get("CUBEINSTALL_TESTCLUSTER_RUN")
    return Path(override).expanduser() if override else build.cache_root() / "run"


def _attached(directory: Path) -> ControlPlane | None:
    if not (directory / STATE_FILE).exists():
        return None
    return ControlPlane.attach(directory)


def cmd_up(directory: Path, args: argparse.Namespace) -> int:
    existing = _attached(directory)
    if existing is not None:
        if all(existing.running().values()):
            print(
                f"test cluster already running; KUBECONFIG={existing.kubeconfig}", file=sys.stderr
            )
            print(existing.kubeconfig)
            return 0
        print("cleaning up a test cluster that is no longer complete", file=sys.stderr)
        existing.stop(remove_logs=False)
    tools = build.ensure(build=True, parts=build.PARTS if args.real_node
                         else build.CONTROL_PLANE_PARTS)
    real_node: RealNodeSpec | bool = False
    if args.real_node:
        labels = dict(label.split("=", 1) for label in args.real_node_label)
        real_node = RealNodeSpec(args.real_node_name, labels=labels,
                                 taints=() if args.real_node_untainted else RealNodeSpec().taints)
    control_plane = ControlPlane(directory, tools=tools, detached=True,
                                 real_node=real_node).start()
    print(
        f"test cluster up in {control_plane.timings['total']:.1f}s "
        f"(logs: {directory / 'logs'}); use it with:\n"
        f"  export KUBECONFIG={shlex.quote(str(control_plane.kubeconfig))}",
        file=sys.stderr,
    )
    print(control_plane.kubeconfig)
    return 0


def cmd_down(directory: Path, args: argparse.Namespace) -> int:
    existing = _attached(directory)
    if existing is None:
        print(f"no test cluster running (no {directory / STATE_FILE})", file=sys.stderr)
        return 0
    existing.stop(remove_logs=False)
    print("test cluster stopped", file=sys.stderr)
    return 0


def cmd_env(directory: Path, args: argparse.Namespace) -> int:
    existing = _attached(directory)
    if existing is None:
        print("no test cluster running; run: scripts/testcluster up", file=sys.stderr)
        return 1
    path = shlex.quote(str(existing.kubeconfig))
    print(f"export KUBECONFIG={path}")
    print(f"export CUBEINSTALL_TEST_KUBECONFIG={path}")
    return 0


def cmd_status(directory: Path, args: argparse.Namespace) -> int:
    existing = _attached(directory)
    if existing is None:
        print("test cluster: down")
        return 1
    healthy = True
    real = existing.real_node.processes if existing.real_node else []
    for proc in [*existing.processes, *real]:
        alive = proc.running()
        healthy &= alive
        state = "running" if alive else "NOT RUNNING"
        print(f"{proc.name:<24} pid {proc.pid:<8} {state:<11}  log {proc.log_path}")
    if healthy:
        from kubernetes import client

        from .nodes import node_schedulable

        try:
            with existing.api_client() as api:
                version = client.VersionApi(api).get_code().git_version
                nodes = client.CoreV1Api(api).list_node().items
        except Exception as exc:  # noqa: BLE001 - report, do not crash
            print(f"API server {existing.server}: not answering ({exc})")
            return 1
        print(f"API server {existing.server}: Kubernetes {version}")
        for node in nodes:
            ready = node_schedulable(node)
            healthy &= ready
            print(f"node {node.metadata.name:<18} {'Ready' if ready else 'NOT READY'}")
    print(f"KUBECONFIG={existing.kubeconfig}")
    return 0 if healthy else 1


COMMANDS = {"up": cmd_up, "down": cmd_down, "env": cmd_env, "status": cmd_status}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="testcluster", description="Run the local Kubernetes test cluster in the background."
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--real-node", action="store_true",
                        help="up: add a real kubelet + containerd node (needs root)")
    parser.add_argument("--real-node-name", default=RealNodeSpec().name)
    parser.add_argument("--real-node-label", action="append", default=[], metavar="KEY=VALUE",
                        help="up: a label of the real node (repeatable)")
    parser.add_argument("--real-node-untainted", action="store_true",
                        help="up: no NoSchedule taint (any pod may land on the real node)")
    args = parser.parse_args(argv)
    if any("=" not in label for label in args.real_node_label):
        parser.error("--real-node-label takes KEY=VALUE")
    try:
        return COMMANDS[args.command](run_dir(), args)
    except (build.BuildError, ControlPlaneError, ProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
