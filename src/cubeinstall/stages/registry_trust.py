"""registry-trust: every node can pull from the site registry.

Enabled when nodes pull from a registry they do not trust by default
(``registry.insecure``, or a private CA in ``registry.ca_file``).

docker: an insecure registry is merged into ``insecure-registries`` of
/etc/docker/daemon.json (every other key kept, an invalid file refused), and
docker restarts only when that file changed (or it is not running with it
yet); a CA goes to /etc/docker/certs.d/<host>/ca.crt, which docker reads at
every pull: no restart. This stage is the one owner of insecure-registries;
gpu-runtime writes only the nvidia runtime keys of the same file.

containerd: ``config_path`` of its registry table in /etc/containerd/config.toml
names /etc/containerd/certs.d (kept beside any directory already there), and
/etc/containerd/certs.d/<host>/hosts.toml says how to reach the registry:
``skip_verify`` over HTTPS with plain HTTP after it for an insecure one, ``ca``
(the CA beside it) otherwise. containerd re-reads hosts.toml at every pull, so it
restarts only when config.toml changed (or it is not running with it yet).
"""

from __future__ import annotations

from pathlib import Path

from cubeinstall.core.change import Change
from cubeinstall.core.errors import ConfigError
from cubeinstall.remote.edits import (
    EnsureJsonMerge,
    EnsureTomlValues,
    Union,
    load_toml,
    toml_value,
)
from cubeinstall.remote.errors import HostError, Refused
from cubeinstall.remote.facts import (
    ContainerdConfig,
    DockerInsecureRegistries,
    FileText,
    PathInfo,
)
from cubeinstall.remote.host import facts_of
from cubeinstall.remote.operations import EnsureDir, EnsureFile, Run
from cubeinstall.remote.runtime_paths import (
    CONTAINERD_CERTS,
    CONTAINERD_TOML,
    DAEMON_JSON,
    DOCKER_CERTS,
    hosts_toml,
)
from cubeinstall.remote.stage import node_stage
from cubeinstall.site.model import Site

STAGE = "registry-trust"
# containerd's CRI registry table by config version: 1.x reads versions 1 and 2, 2.x
# writes version 3 (and migrates the older ones when it loads them).
REGISTRY_TABLE = {1: ("plugins", "cri", "registry"),
                  2: ("plugins", "io.containerd.grpc.v1.cri", "registry"),
                  3: ("plugins", "io.containerd.cri.v1.images", "registry")}
_PEM = b"-----BEGIN CERTIFICATE-----"


def ca_certificate(site: Site) -> bytes | None:
    """The registry's CA (PEM) when nodes verify it with one; None for an insecure registry.
    (insecure wins over ca_file, as for the image mirror.)"""
    registry = site.registry
    if registry is None or registry.insecure or not registry.ca_file:
        return None
    try:
        pem = Path(registry.ca_file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"registry.ca_file {registry.ca_file}: cannot read it ({exc.strerror})",
                          hint="point registry.ca_file at the registry's CA certificate (PEM)") from None
    if _PEM not in pem:
        raise ConfigError(f"registry.ca_file {registry.ca_file} holds no PEM certificate",
                          hint="point registry.ca_file at the registry's CA certificate (PEM)")
    return pem


def check_values(site: Site) -> None:
    ca_certificate(site)


def trust(host, site: Site) -> None:
    if site.runtime == "docker":
        _docker(host, site)
    else:
        _containerd(host, site)


# -- docker ---------------------------------------------------------------------------------


def _docker(host, site: Site) -> None:
    registry = site.registry.host
    pem = ca_certificate(site)
    if pem is not None:  # docker reads certs.d at every pull: no restart
        host.converge([EnsureDir(f"{DOCKER_CERTS}/{registry}"),
                       EnsureFile(f"{DOCKER_CERTS}/{registry}/ca.crt", pem)])
        return
    files = [EnsureDir("/etc/docker", mode=None, owner=None, group=None),
             EnsureJsonMerge(DAEMON_JSON, {"insecure-registries": Union((registry,))},
                             summary=f"{registry} in docker's insecure-registries")]
    facts = host.facts([*facts_of(files), DockerInsecureRegistries()])
    changed = host.decide(files[-1], facts).changed
    operations = list(files)
    if changed or registry not in (facts[DockerInsecureRegistries()] or ()):
        reason = "daemon.json changed" if changed else f"not running with {registry} insecure yet"
        operations.append(Run("docker", "systemctl restart docker", f"restart docker ({reason})"))
    _converge_restarting(host, operations, [DockerInsecureRegistries()], DAEMON_JSON, "docker",
                         changed)
    if host.write and registry not in (host.fact(DockerInsecureRegistries()) or ()):
        raise host.fail(f"docker info does not list {registry} as an insecure registry",
                        hint="check `journalctl -u docker` on the host")


# -- containerd ----------------------------------------------------------------------------


def _host_files(site: Site) -> list:
    registry = site.registry.host
    directory = f"{CONTAINERD_CERTS}/{registry}"
    pem = ca_certificate(site)
    https = f"https://{registry}"
    values: list = [(("server",), https), (("host", https, "capabilities"), ("pull", "resolve"))]
    files: list = [EnsureDir(directory)]
    if pem is None:  # TLS without verification first, then plain HTTP
        values += [(("host", https, "skip_verify"), True),
                   (("host", f"http://{registry}", "capabilities"), ("pull", "resolve"))]
    else:
        files.append(EnsureFile(f"{directory}/ca.crt", pem))
        values.append((("host", https, "ca"), f"{directory}/ca.crt"))
    summary = f"how containerd reaches {registry} ({'insecure' if pem is None else 'its CA'})"
    return [*files, EnsureTomlValues(hosts_toml(registry), tuple(values), summary=summary)]


def _containerd(host, site: Site) -> None:
    host_files = _host_files(site)
    facts = host.facts([PathInfo(CONTAINERD_TOML), FileText(CONTAINERD_TOML), ContainerdConfig(),
                        *facts_of(host_files)])
    text, running = facts[FileText(CONTAINERD_TOML)], facts[ContainerdConfig()]
    if running is None:
        raise host.fail("containerd config dump does not answer: is containerd installed?",
                        hint="install containerd, or set runtime: docker in site.yaml")
    try:
        config = _config_edit(text, running)
    except Refused as exc:
        raise host.fail(exc.message, exc.hint) from None
    changed = config is not None and host.decide(config, facts).changed
    operations = [*host_files, *([config] if config else [])]
    if changed or not _runs_with_certs_dir(running):
        reason = "config.toml changed" if changed else f"not running with {CONTAINERD_CERTS} yet"
        operations.append(Run("containerd", "systemctl restart containerd",
                              f"restart containerd ({reason})"))
    _converge_restarting(host, operations, [ContainerdConfig()], CONTAINERD_TOML, "containerd",
                         changed)
    if host.write and not _runs_with_certs_dir(host.fact(ContainerdConfig())):
        raise host.fail(f"containerd config dump does not show config_path {CONTAINERD_CERTS}",
                        hint=f"check {CONTAINERD_TOML} and `journalctl -u containerd` on the host")


def _config_edit(text: str | None, running: str) -> EnsureTomlValues | None:
    """config_path in the registry table of the file's config version (of the running
    containerd's, for a new file), keeping any directory it names already. None: no file,
    and containerd's defaults already read the directory (containerd 2.x)."""
    new_file = not (text and text.strip())
    if new_file and _runs_with_certs_dir(running):
        return None
    document = load_toml(CONTAINERD_TOML, running if new_file else text)
    version = document.get("version", 1)
    table = REGISTRY_TABLE.get(version)
    if table is None:
        raise Refused(f"{CONTAINERD_TOML}: config version {version!r} is not one containerd "
                      f"1.x or 2.x reads ({', '.join(map(str, REGISTRY_TABLE))})",
                      hint="fix the version line of the file, then run again")
    if new_file:  # nothing of the running config is written into the new file
        document = {}
    registry = toml_value(document, table)
    registry = registry if isinstance(registry, dict) else {}
    if registry.get("mirrors") or any("tls" in entry for entry in (registry.get("configs") or {}).values()
                                      if isinstance(entry, dict)):
        raise Refused(f"{CONTAINERD_TOML} configures registries in {'.'.join(table)}.mirrors/"
                      "configs.*.tls, which containerd refuses beside config_path; "
                      "it was left unchanged",
                      hint=f"move those settings into {CONTAINERD_CERTS}/<host>/hosts.toml "
                           "files, then run again")
    current = str(registry.get("config_path") or "")
    directories = [d for d in current.split(":") if d]
    wanted = current if CONTAINERD_CERTS in directories else ":".join([CONTAINERD_CERTS, *directories])
    return EnsureTomlValues(CONTAINERD_TOML, (((*table, "config_path"), wanted),),
                            start=f"version = {version}\n",
                            summary=f"containerd reads registry hosts from {CONTAINERD_CERTS}")


def _runs_with_certs_dir(running: str | None) -> bool:
    try:
        document = load_toml(CONTAINERD_TOML, running or "")
    except Refused:
        return False
    table = REGISTRY_TABLE.get(document.get("version", 1), ())
    config_path = toml_value(document, (*table, "config_path")) or ""
    return CONTAINERD_CERTS in str(config_path).split(":")


# -- both ----------------------------------------------------------------------------------


def _converge_restarting(host, operations: list, then: list, path: str, unit: str,
                         file_changed: bool) -> None:
    """Converge; a failed restart (the Run targeted at ``unit``, last in its round trip)
    says where the file it was restarted for was kept."""
    try:
        host.converge(operations, then=then)
    except HostError as exc:
        if f"run {unit} failed" in exc.message:
            kept = (f"{path} was just written; the file it replaced (if any) is kept as "
                    f"{path}.cubeinstall-<UTC time>.bak (`cubeinstall uninstall "
                    "--restore-node-files` gives it back); " if file_changed else "")
            exc.hint = f"{kept}check `journalctl -u {unit}` on the host"
        raise


plan, apply = node_stage(STAGE, trust, check=check_values)


def describe(site: Site) -> list[Change]:
    registry = site.registry.host
    if site.runtime == "docker":
        what = (f"CA of {registry} at {DOCKER_CERTS}/{registry}/ca.crt" if ca_certificate(site)
                else f"{registry} merged into insecure-registries of {DAEMON_JSON}")
    else:
        what = f"config_path {CONTAINERD_CERTS} in {CONTAINERD_TOML}, {hosts_toml(registry)}"
    return [Change(node.name, "run", what) for node in site.nodes]
