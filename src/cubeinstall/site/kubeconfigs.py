"""Which kubeconfig file and context each cluster uses, the way kubectl decides.

1. ``--kubeconfig`` / ``--context`` override the platform cluster (the first) for every
   command: the site returned here carries them, so render and ``plan --offline`` (the
   kubeconfig stage embeds the file) read the same file as a live plan.
2. A cluster whose site entry names no ``kubeconfig`` uses ``$KUBECONFIG`` when it is set,
   a colon-separated list included: the first file that defines the context in use
   (the cluster's ``context``, else the first ``current-context`` of the list).
3. Otherwise the site's ``kubeconfig`` (default ``~/.kube/config``).

A file or context from a flag or the environment is checked here, and a problem names
that flag or variable: the site file is not what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from cubeinstall.core.errors import ConfigError
from cubeinstall.site.model import Site

SITE_ORIGIN = "site.yaml"


def effective_site(site: Site, kubeconfig: Path | None = None, context: str | None = None,
                   environ: Mapping[str, str] = os.environ) -> tuple[Site, dict[str, str]]:
    """(the site with each cluster's effective kubeconfig and context, cluster name -> where
    they come from: "--kubeconfig", "--context", "KUBECONFIG" or "site.yaml")."""
    env_list = [part for part in environ.get("KUBECONFIG", "").split(os.pathsep) if part]
    clusters, origins = [], {}
    for index, cluster in enumerate(site.clusters):
        path, name, origin = cluster.kubeconfig, cluster.context, SITE_ORIGIN
        platform = index == 0
        if platform and kubeconfig is not None:
            path, origin = Path(os.path.expanduser(str(kubeconfig))).absolute(), "--kubeconfig"
            name = context or name
            _check(path, name, origin, context_origin="--context" if context else SITE_ORIGIN)
        elif "kubeconfig" not in cluster.model_fields_set and env_list:
            name = (context if platform else None) or name
            path, name = _from_list(env_list, name,
                                    "--context" if platform and context else SITE_ORIGIN)
            origin = "KUBECONFIG"
        elif platform and context is not None:
            name, origin = context, "--context"
            _check(path, name, SITE_ORIGIN, context_origin="--context")
        if (path, name) != (cluster.kubeconfig, cluster.context):
            cluster = cluster.model_copy(update={"kubeconfig": path, "context": name})
        clusters.append(cluster)
        origins[cluster.name] = origin
    if clusters == list(site.clusters):
        return site, origins
    return site.model_copy(update={"clusters": tuple(clusters)}), origins


def hint_for(origin: str) -> str:
    """What to check when a cluster's kubeconfig does not work, by where it came from."""
    if origin == SITE_ORIGIN:
        return "check clusters[].kubeconfig and context in site.yaml"
    if origin == "KUBECONFIG":
        return "check the files in $KUBECONFIG, or name one with --kubeconfig"
    return f"check {origin}"


def _read(path: Path, origin: str) -> dict:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read kubeconfig {path}: {exc.strerror or exc}",
                          hint=f"give {origin} an existing kubeconfig file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: kubeconfig {path} is not valid YAML: {exc}",
                          hint=f"give {origin} a kubeconfig file") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{origin}: {path} is not a kubeconfig (a mapping with clusters, "
                          "users, contexts)", hint=f"give {origin} a kubeconfig file")
    return config


def _contexts(config: dict) -> list[str]:
    return [str(entry.get("name")) for entry in config.get("contexts") or []
            if isinstance(entry, dict)]


def _check(path: Path, name: str | None, origin: str, context_origin: str) -> None:
    config = _read(path, origin)
    name = name or config.get("current-context")
    known = _contexts(config)
    if not name:
        raise ConfigError(f"{origin}: kubeconfig {path} has no current-context",
                          hint=f"pick one with --context (contexts: {', '.join(known) or 'none'})")
    if name not in known:
        raise ConfigError(f"{context_origin}: context {name!r} is not in kubeconfig {path}",
                          hint=f"its contexts: {', '.join(known) or 'none'}")


def _self_contained(path: Path, config: dict, name: str) -> None:
    """cubeinstall reads one file per cluster: the context's cluster and user must be in it."""
    [context] = [entry.get("context") or {} for entry in config.get("contexts") or []
                 if isinstance(entry, dict) and entry.get("name") == name][:1] or [{}]
    for section, wanted in (("clusters", context.get("cluster")), ("users", context.get("user"))):
        names = {entry.get("name") for entry in config.get(section) or [] if isinstance(entry, dict)}
        if wanted not in names:
            raise ConfigError(
                f"KUBECONFIG: context {name!r} of {path} uses {section[:-1]} {wanted!r} from "
                "another file; cubeinstall reads one kubeconfig file per cluster",
                hint="merge them (kubectl config view --flatten > FILE) and pass --kubeconfig FILE")


def _from_list(paths: list[str], name: str | None, context_origin: str) -> tuple[Path, str]:
    """The file of $KUBECONFIG that defines the context, and the context's name."""
    configs = []
    for raw in paths:
        path = Path(os.path.expanduser(raw)).absolute()
        if not path.exists():  # like kubectl: a missing file in the list is skipped
            continue
        configs.append((path, _read(path, "KUBECONFIG")))
    if not configs:
        raise ConfigError(f"KUBECONFIG: none of its files exists ({os.pathsep.join(paths)})",
                          hint="fix $KUBECONFIG or pass --kubeconfig")
    if name is None:
        name = next((c.get("current-context") for _, c in configs if c.get("current-context")),
                    None)
        context_origin = "KUBECONFIG"
        if name is None:
            raise ConfigError("KUBECONFIG: no file sets a current-context",
                              hint="pass --context NAME")
    for path, config in configs:
        if name in _contexts(config):
            _self_contained(path, config, name)
            return path, name
    known = [context for _, config in configs for context in _contexts(config)]
    raise ConfigError(f"{context_origin}: context {name!r} is in none of the KUBECONFIG files",
                      hint=f"their contexts: {', '.join(known) or 'none'}")

