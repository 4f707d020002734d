"""Where the container runtimes read their configuration on a node.

One place for the paths the node stages write and ``--restore-node-files`` gives back.
"""

from __future__ import annotations

DAEMON_JSON = "/etc/docker/daemon.json"
DOCKER_CERTS = "/etc/docker/certs.d"  # <registry host>/ca.crt, read by docker at every pull
CONTAINERD_TOML = "/etc/containerd/config.toml"
CONTAINERD_CERTS = "/etc/containerd/certs.d"  # <registry host>/hosts.toml, re-read at every pull


def hosts_toml(registry: str) -> str:
    return f"{CONTAINERD_CERTS}/{registry}/hosts.toml"


def registry_files(registry: str) -> tuple[str, ...]:
    """The files that make a node trust ``registry`` (hosts.toml and the CA files):
    read by the runtime at every pull, so giving them back restarts nothing."""
    return (hosts_toml(registry), f"{CONTAINERD_CERTS}/{registry}/ca.crt",
            f"{DOCKER_CERTS}/{registry}/ca.crt")
