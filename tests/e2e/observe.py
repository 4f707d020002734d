"""What the e2e tests look at, read straight from the servers (never through the product).

- the cluster: every object of every listable resource carrying the ownership label,
  with its resourceVersion (found by API discovery, so nothing can hide in a kind
  the test did not think of);
- the nodes: inode, mtime, mode, size and bytes of the files the node stages own,
  read through /proc/<sshd pid>/root; leftover temp files of an interrupted write;
- MariaDB: its global counters of write statements.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tests.servers.sshd import SandboxNode, snapshot

MANAGED = "app.kubernetes.io/managed-by=cubeinstall"
KEPT = "cubeinstall.io/kept-from-stage"  # any value: the stage that kept it
# The run's own bookkeeping: the Lease is taken and released by every run and the
# journal's cluster copy records every run's timestamps. Both are labelled so that
# uninstall leaves nothing behind, and both change by design on every run.
BOOKKEEPING = ("coordination.k8s.io/Lease/kube-system/cubeinstall-",
               "/ConfigMap/kube-system/cubeinstall-journal-")
# What the node stages write: fstab (swap, CephFS), the Ceph secret, daemon.json,
# and the platform's directories on the shared file system.
NODE_PATHS = ("/etc/fstab", "/etc/ceph", "/etc/docker", "/data/k8s")
TEMP_MARK = ".cubeinstall."  # operations.py writes .<name>.cubeinstall.XXXXXX, then renames
WATCHED_DIRS = ("/etc", "/etc/docker", "/etc/ceph")


def _get(api, path: str, **query) -> dict:
    response = api.call_api(path, "GET", query_params=list(query.items()),
                            header_params={"Accept": "application/json"},
                            auth_settings=["BearerToken"], _preload_content=False,
                            _return_http_data_only=True)
    return json.loads(response.data)


def listable_resources(api) -> list[tuple[str, str, str]]:
    """(group, group/version path, resource) of every served resource that supports list."""
    versions = [("", "/api/v1")]
    for group in _get(api, "/apis")["groups"]:
        versions += [(group["name"], f"/apis/{v['groupVersion']}") for v in group["versions"]]
    found = []
    for group, path in versions:
        for resource in _get(api, path)["resources"]:
            if "/" not in resource["name"] and "list" in resource.get("verbs", []):
                found.append((group, path, resource["name"]))
    return found


def owned_objects(kubeconfig: Path, selector: str = MANAGED) -> dict[str, str]:
    """"group/Kind/namespace/name" -> resourceVersion of every object matching ``selector``."""
    from kubernetes import config

    owned: dict[str, str] = {}
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        for group, path, resource in listable_resources(api):
            listing = _get(api, f"{path}/{resource}", labelSelector=selector)
            for item in listing.get("items", []):
                meta = item["metadata"]
                key = f"{group}/{item.get('kind') or listing['kind'][:-4]}/" \
                      f"{meta.get('namespace', '')}/{meta['name']}"
                owned[key] = meta["resourceVersion"]
    return owned


def without_bookkeeping(objects: dict[str, str]) -> dict[str, str]:
    return {key: version for key, version in objects.items()
            if not any(mark in key for mark in BOOKKEEPING)}


def host_files(nodes: Iterable[SandboxNode]) -> dict[str, dict[str, tuple]]:
    """Per node, a snapshot of NODE_PATHS. The storage stage's read-write probe creates
    and removes a file in the mount root, so only that directory's own mtime is skipped;
    everything under it is compared."""
    return {node.name: snapshot(node, *NODE_PATHS, skip=("/data/k8s",)) for node in nodes}


def temp_files(node: SandboxNode) -> list[str]:
    """Temp files of an atomic write that never got renamed (a half-written file)."""
    return sorted(f"{directory}/{path.name}" for directory in WATCHED_DIRS
                  if node.path(directory).is_dir()
                  for path in node.path(directory).iterdir() if TEMP_MARK in path.name)


def fstab_problems(text: str) -> list[str]:
    """Lines of an fstab that mount(8) could not parse (4 to 6 fields)."""
    return [line for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
            and not 4 <= len(line.split()) <= 6]
