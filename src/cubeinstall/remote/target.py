"""Where and as whom to connect for a node: site.yaml merged with ~/.ssh/config.

Precedence follows OpenSSH (command line beats the config file): a value set
on the node wins, then a value written explicitly under ``ssh:`` in site.yaml,
then the matching ``Host`` block of the ssh config (``node.ssh_alias``, or the
address), then the defaults of the site model. ProxyJump hops are resolved
through the same config.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cubeinstall.core.errors import ConfigError
from cubeinstall.site.model import Node, Site
from cubeinstall.site.secrets import Secret


@dataclass(frozen=True)
class Endpoint:
    """One SSH server to authenticate to (the node itself or a jump host)."""

    hostname: str
    port: int
    user: str
    key_files: tuple[Path, ...] = ()
    password: Secret | None = None

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


@dataclass(frozen=True)
class HostTarget:
    name: str
    endpoint: Endpoint
    jumps: tuple[Endpoint, ...]  # first hop first
    sudo: bool
    sudo_password: Secret | None
    known_hosts: Path
    connect_timeout: float
    command_timeout: float

    @property
    def label(self) -> str:
        return f"{self.name} ({self.endpoint})"


_configs: dict[Path, object] = {}
_configs_lock = threading.Lock()


def _ssh_config(path: Path | None):
    """The parsed ssh config (cached per path), or None when there is none."""
    import paramiko

    if path is None or not path.is_file():
        return None
    with _configs_lock:
        if path not in _configs:
            try:
                _configs[path] = paramiko.SSHConfig.from_path(str(path))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read ssh config {path}: {exc}",
                                  hint="fix the file or point ssh.config_file elsewhere") from None
        return _configs[path]


def _lookup(config, host: str) -> dict:
    return dict(config.lookup(host)) if config is not None else {"hostname": host}


def _identity_files(entry: dict) -> tuple[Path, ...]:
    """IdentityFile entries that exist: like ssh, a missing one is skipped silently."""
    paths = (Path(os.path.expanduser(p)) for p in entry.get("identityfile", ()))
    return tuple(p for p in paths if p.is_file())


def resolve(site: Site, node: Node) -> HostTarget:
    ssh = site.ssh
    explicit = ssh.model_fields_set
    config = _ssh_config(ssh.config_file)
    alias = node.ssh_alias or node.address
    entry = _lookup(config, alias)
    hostname = entry.get("hostname", alias)
    if node.ssh_alias and hostname == node.ssh_alias:
        hostname = node.address  # the alias block names no HostName: the address is the host

    def pick(node_value, field: str, config_key: str, convert=str):
        if node_value is not None:
            return node_value
        if field in explicit or config_key not in entry:
            return getattr(ssh, field)
        return convert(entry[config_key])

    key_files = tuple(p for p in (node.key_file, ssh.key_file) if p is not None)
    key_files += _identity_files(entry)
    user = pick(node.user, "user", "user")
    endpoint = Endpoint(
        hostname=hostname,
        port=pick(node.port, "port", "port", int),
        user=user,
        key_files=tuple(dict.fromkeys(key_files)),
        password=node.password or ssh.password,
    )
    return HostTarget(
        name=node.name,
        endpoint=endpoint,
        jumps=_jumps(config, entry.get("proxyjump"), endpoint, node.name),
        sudo=node.sudo if node.sudo is not None else user != "root",
        sudo_password=node.sudo_password or ssh.sudo_password,
        known_hosts=ssh.known_hosts,
        connect_timeout=ssh.connect_timeout,
        command_timeout=ssh.command_timeout,
    )


def _jumps(config, spec: str | None, target: Endpoint, node: str) -> tuple[Endpoint, ...]:
    """ProxyJump ``[user@]host[:port],...`` as endpoints, each through the ssh config."""
    if not spec or spec.strip().lower() == "none":
        return ()
    hops = []
    for hop in spec.split(","):
        user, _, hostport = hop.strip().rpartition("@")
        host, _, port = hostport.partition(":")
        if not host:
            raise ConfigError(f"node {node}: ProxyJump entry {hop!r} in the ssh config names no host")
        entry = _lookup(config, host)
        hops.append(Endpoint(
            hostname=entry.get("hostname", host),
            port=int(port or entry.get("port", 22)),
            user=user or entry.get("user", target.user),
            # A jump host accepts keys (or the agent), never the node's password.
            key_files=_identity_files(entry) or target.key_files,
        ))
    return tuple(hops)
