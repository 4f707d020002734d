"""kubeconfig: each cluster's kubeconfig, self-contained, as Secret kubernetes-config.

The platform reads ``/home/myapp/kubeconfig/<cluster>-kubeconfig`` (the path config.py's
CLUSTERS names; the platform pods mount this Secret there). As upstream's start.sh
does, the platform's own cluster gets an EMPTY file: the platform then uses its
in-cluster ServiceAccount ``kubeflow-dashboard`` (py_k8s.py), and the installer's
credentials never reach a pod. Every other cluster gets its kubeconfig, with the
files it references embedded (a path on this machine would be useless in a pod).
Upstream ships a ConfigMap; this is a Secret, because it holds credentials.
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from cubeinstall.core.errors import ConfigError
from cubeinstall.site import platform
from cubeinstall.site.model import Cluster, Site
from cubeinstall.site.secrets import Secret

STAGE = "kubeconfig"
_FILE_FIELDS = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
}


def render(site: Site) -> list[dict]:
    home = site.platform_cluster
    files = {platform.kubeconfig_file(c.name): "" if c.name == home.name
             else self_contained_kubeconfig(c)
             for c in site.clusters}
    data = {
        name: base64.b64encode(text.encode()).decode() for name, text in sorted(files.items())
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": platform.KUBECONFIG_SECRET, "namespace": ns},
            "type": "Opaque",
            "data": data,
        }
        for ns in platform.KUBECONFIG_NAMESPACES
    ]


def self_contained_kubeconfig(cluster: Cluster) -> str:
    """The cluster's context alone, with every referenced file embedded."""
    path = cluster.kubeconfig
    where = f"clusters[{cluster.name}].kubeconfig"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}",
                          hint="point kubeconfig at the cluster's kubeconfig file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: {path} is not valid YAML: {exc}") from None

    context_name = cluster.context or config.get("current-context")
    context = _named(config, "contexts", context_name, where, path)
    cluster_entry = _named(config, "clusters", context["cluster"], where, path)
    user_entry = _named(config, "users", context["user"], where, path)
    if "exec" in user_entry or "auth-provider" in user_entry:
        raise ConfigError(
            f"{where}: user {context['user']!r} in {path} authenticates with an exec/auth "
            "plugin, which cannot run inside the platform's pods",
            hint="use a kubeconfig with a token or client certificate (e.g. a ServiceAccount token)",
        )
    base = path.parent
    result = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context_name,
        "contexts": [{"name": context_name, "context": context}],
        "clusters": [{"name": context["cluster"], "cluster": _embed(cluster_entry, base, where)}],
        "users": [{"name": context["user"], "user": _embed(user_entry, base, where)}],
    }
    for entry in result["users"]:
        for key in ("token", "password", "client-key-data"):
            if key in entry["user"]:
                Secret(entry["user"][key], f"{where}:{key}")  # registers it for masking
    return yaml.safe_dump(result, sort_keys=True)


def _named(config: dict, section: str, name: str | None, where: str, path: Path) -> dict:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            return dict(entry.get(section[:-1]) or {})
    raise ConfigError(f"{where}: {section[:-1]} {name!r} not found in {path}",
                      hint="set clusters[].context to a context of that file")


def _embed(entry: dict, base: Path, where: str) -> dict:
    entry = dict(entry)
    for file_key, data_key in _FILE_FIELDS.items():
        if file_key in entry:
            file_path = Path(entry.pop(file_key)).expanduser()
            if not file_path.is_absolute():
                file_path = base / file_path
            try:
                entry[data_key] = base64.b64encode(file_path.read_bytes()).decode()
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read {file_key} {file_path}: "
                                  f"{exc.strerror or exc}") from None
    return entry
