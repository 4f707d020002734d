"""Read-only questions to every node at once, for preflight and status.

Unlike a stage, a probe never fails the run by itself: it answers per node
(None when all is well, else what is wrong) and the caller grades the answers.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import CubeError
from cubeinstall.core.redaction import redact
from cubeinstall.remote.facts import Mounts, OsFacts, TcpConnect, mount_at
from cubeinstall.remote.host import Host
from cubeinstall.remote.pool import pool_for

Question = Callable[[Host], "str | None"]


def ask_nodes(ctx: RunContext, question: Question,
              write: bool = False) -> list[tuple[str, str | None]]:
    """(node name, problem or None) for every node, asked in parallel (ssh.parallel).
    ``write``: the question may change the host (Host.change), e.g. restoring files."""
    connections = pool_for(ctx)

    def ask(node) -> tuple[str, str | None]:
        try:
            return node.name, question(Host(node.name, connections.get(node), write=write))
        except CubeError as exc:
            connections.discard(node.name)
            return node.name, redact(exc.message)

    workers = max(1, min(ctx.site.ssh.parallel, len(ctx.site.nodes)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ssh-probe") as threads:
        return list(threads.map(ask, ctx.site.nodes))


def probe_nodes(ctx: RunContext) -> list[tuple[str, str | None]]:
    """Each node answers over SSH (connecting checks the host key and sudo)."""
    return ask_nodes(ctx, lambda host: host.fact(OsFacts()) and None)


def unmounted_nodes(ctx: RunContext) -> list[tuple[str, str]]:
    """(node, problem) where the shared storage's mount point is not a mount, or where it
    could not be asked (the connection's error: an unknown host key is not "unmounted")."""
    mount_point = ctx.site.storage.mount_point
    target = ctx.site.storage.mount_at or mount_point

    def question(host: Host) -> str | None:
        return None if mount_at(host.fact(Mounts()), target) else f"{mount_point} is not mounted"

    return [(name, problem) for name, problem in ask_nodes(ctx, question) if problem]


CANNOT_CONNECT = "cannot connect to"


def registry_ports(registry: str, insecure: bool) -> tuple[str, tuple[int, ...]]:
    """(address, ports) a node connects to for ``host[:port]``: without a port, HTTPS's
    443, and for an insecure registry plain HTTP's 80 too (the runtimes try both)."""
    if registry.startswith("["):
        address, _, rest = registry[1:].partition("]")
        port = rest[1:]
    else:
        address, _, port = registry.partition(":")
    if port:
        return address, (int(port),)
    return address, (443, 80) if insecure else (443,)


def nodes_not_reaching(ctx: RunContext, registry: str, insecure: bool) -> list[tuple[str, str]]:
    """(node, problem) for each node that cannot open a TCP connection to the registry,
    asked from the node itself (one round trip on the node's SSH connection)."""
    address, ports = registry_ports(registry, insecure)
    connects = [TcpConnect(address, port) for port in ports]

    def question(host: Host) -> str | None:
        answers = host.facts(connects)
        if any(ok for ok, _ in answers.values()):
            return None
        return "; ".join(f"{CANNOT_CONNECT} {registry if len(ports) == 1 else f'{address}:{c.port}'}: "
                         f"{answers[c][1]}" for c in connects)

    return [(name, problem) for name, problem in ask_nodes(ctx, question) if problem]
