"""One verified SSH connection per node for a whole run.

node-prep, storage, gpu-runtime and registry-trust run one after the other on the same hosts:
they share each host's connection (its sudo probe and its root shell) instead
of paying the handshake, host key check, authentication and sudo once per stage. A connection
that failed is dropped, so the next stage connects afresh. The pool lives in
the run context and is closed when the context goes away (or at exit).
"""

from __future__ import annotations

import threading
import weakref

from cubeinstall.core.context import RunContext
from cubeinstall.remote.known_hosts import KnownHosts
from cubeinstall.remote.ssh import Connection
from cubeinstall.remote.target import resolve
from cubeinstall.site.model import Node, Site


class ConnectionPool:
    def __init__(self, site: Site, trust_new_hosts: bool):
        self.site = site
        self.known_hosts = KnownHosts(site.ssh.known_hosts, trust_new_hosts)
        self._connections: dict[str, Connection] = {}
        self._lock = threading.Lock()

    def get(self, node: Node) -> Connection:
        with self._lock:
            connection = self._connections.get(node.name)
        if connection is not None and connection.alive():
            return connection
        connection = Connection(resolve(self.site, node), self.known_hosts).open()
        with self._lock:
            self._connections[node.name] = connection
        return connection

    def discard(self, name: str) -> None:
        with self._lock:
            connection = self._connections.pop(name, None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()


def pool_for(ctx: RunContext) -> ConnectionPool:
    def create() -> ConnectionPool:
        pool = ConnectionPool(ctx.site, ctx.options.trust_new_hosts)
        weakref.finalize(ctx, pool.close)  # also runs at interpreter exit
        return pool

    return ctx.cached("ssh-connections", create)
