"""pv-pvc: the platform's PersistentVolumes on the shared storage, each bound to its claim.

Upstream's pv-pvc-<namespace>.yaml files (platform.PLATFORM_VOLUME_FILES) as they are:
names, ``<ns>-pvname`` labels, access modes, ``storageClassName: ""``, Retain, hostPath
without a type (a PV's source is immutable: a start.sh site's volumes are taken over only
if it is equal). What the site decides, by typed patches:

- the host path: upstream's ``/data/k8s/...`` under the site's storage mount point, or
  ``volumes.<claim>.path``; the size: ``volumes.<claim>.size`` (volume and claim);
- ``claimRef`` on every volume (upstream binds from the claim side only, ``volumeName``):
  no other claim can take the volume first, and the engine can give a Released volume
  back to its claim after an uninstall (kube/volumes.py).

A claim already bound keeps its volume (``site.found``, filled by the run from the
cluster): a site an earlier cubeinstall installed named three volumes otherwise
(``infra-kubeflow-global-pvc``, ...) and gave every hostPath ``type: DirectoryOrCreate``;
a claim's ``volumeName`` and a volume's source cannot change, and the data is there.
"""

from __future__ import annotations

import copy

from cubeinstall.core.errors import CubeError
from cubeinstall.site import platform
from cubeinstall.site.model import Site
from cubeinstall.stages.bound_volumes import keep_bound
from cubeinstall.upstream import manifests

STAGE = "pv-pvc"
UPSTREAM = ("cube-studio",)
COMPONENT = "cube-studio"


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    objects = upstream_volumes(site)
    return keep_bound([for_site(site, obj) for obj in objects + katib_copies(objects)],
                      site.found_volumes)


def upstream_volumes(site: Site) -> list[dict]:
    objects = []
    for path in platform.PLATFORM_VOLUME_FILES:
        found = manifests.objects(site, COMPONENT, [path])
        for pv, pvc in pairs(found, path):
            objects += [bind(pv, pvc), pvc]
    return objects


def pairs(objects: list[dict], path: str) -> list[tuple[dict, dict]]:
    """Each PersistentVolume with the one claim that names it (``volumeName``)."""
    claims = {}
    for obj in objects:
        if obj["kind"] == "PersistentVolumeClaim":
            claims.setdefault(obj["spec"].get("volumeName"), []).append(obj)
    result = []
    for pv in (obj for obj in objects if obj["kind"] == "PersistentVolume"):
        bound = claims.pop(pv["metadata"]["name"], [])
        if len(bound) != 1:
            raise CubeError(f"cube-studio {path}: PersistentVolume {pv['metadata']['name']} is "
                            f"named by {len(bound)} claims, not one",
                            hint="the catalog pins this file; report it to cubeinstall")
        result.append((pv, bound[0]))
    if claims:
        raise CubeError(f"cube-studio {path}: claims without their volume: "
                        f"{sorted(c['metadata']['name'] for cs in claims.values() for c in cs)}",
                        hint="the catalog pins this file; report it to cubeinstall")
    return result


def bind(pv: dict, pvc: dict) -> dict:
    pv = copy.deepcopy(pv)
    pv["spec"]["claimRef"] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                              "namespace": pvc["metadata"]["namespace"],
                              "name": pvc["metadata"]["name"]}
    return pv


def katib_copies(objects: list[dict]) -> list[dict]:
    """platform.PLATFORM_VOLUME_COPIES: the same volume and claim in another namespace,
    named and labelled by upstream's rule (``<ns>-<claim>``, ``<ns>-pvname``)."""
    copies = []
    for namespace, (source, claims) in platform.PLATFORM_VOLUME_COPIES.items():
        for claim in claims:
            pvc = next(o for o in objects if o["kind"] == "PersistentVolumeClaim"
                       and (o["metadata"]["namespace"], o["metadata"]["name"]) == (source, claim))
            pv = next(o for o in objects if o["kind"] == "PersistentVolume"
                      and o["metadata"]["name"] == pvc["spec"]["volumeName"])
            name = f"{namespace}-{claim}"
            pv, pvc = copy.deepcopy(pv), copy.deepcopy(pvc)
            pv["metadata"] = {"name": name, "labels": {f"{namespace}-pvname": name}}
            pv["spec"]["claimRef"]["namespace"] = namespace
            pvc["metadata"]["namespace"] = namespace
            pvc["spec"]["volumeName"] = name
            copies += [pv, pvc]
    return copies


def for_site(site: Site, obj: dict) -> dict:
    """The site's host path and size (``volumes.<claim>``) over upstream's."""
    obj = copy.deepcopy(obj)
    spec = obj["spec"]
    if obj["kind"] == "PersistentVolume":
        claim = spec["claimRef"]["name"]
        spec["hostPath"]["path"] = host_path(site, claim, spec["hostPath"]["path"],
                                             obj["metadata"]["name"])
        spec["capacity"]["storage"] = size(site, claim, spec["capacity"]["storage"])
    else:
        requests = spec["resources"]["requests"]
        requests["storage"] = size(site, obj["metadata"]["name"], requests["storage"])
    return obj


def size(site: Site, claim: str, upstream: str) -> str:
    override = site.volumes.get(claim)
    return override.size if override and override.size else upstream


def host_path(site: Site, claim: str, upstream: str, pv_name: str) -> str:
    """``volumes.<claim>.path``, or upstream's path moved under the site's mount point
    (its trailing slash kept: upstream's infra-kubeflow is ``/data/k8s/kubeflow/``)."""
    override = site.volumes.get(claim)
    if override and override.path:
        return override.path
    prefix = platform.UPSTREAM_MOUNT_POINT + "/"
    if not upstream.startswith(prefix):
        raise CubeError(f"cube-studio PersistentVolume {pv_name}: host path {upstream!r} is not "
                        f"under {platform.UPSTREAM_MOUNT_POINT}",
                        hint=f"set volumes.{claim}.path in the site file")
    return f"{site.storage.mount_point.rstrip('/')}/{upstream[len(prefix):]}"
