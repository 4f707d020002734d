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

from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import CubeError
from cubeinstall.site import platform
from cubeinstall.site import stages as registry
from cubeinstall.site.model import FoundVolume, Site
from cubeinstall.upstream import manifests

STAGE = "pv-pvc"
UPSTREAM = ("cube-studio",)
COMPONENT = "cube-studio"


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    objects = upstream_volumes(site)
    return keep_bound([for_site(site, obj) for obj in objects + katib_copies(objects)],
                      site.found.volumes)


def keep_bound(objects: list[dict], found: dict[str, FoundVolume]) -> list[dict]:
    """Each claim keeps the volume it is bound to (``site.found``): an earlier install's
    volume of another name is ours under its name, and its host path source is kept as it
    is when it serves the same directory (a volume's source cannot change). A volume on
    another directory is left to the apply (refused: volumes.<claim>.path names it)."""
    result = []
    for obj in objects:
        if obj["kind"] == "PersistentVolume":
            ref = obj["spec"]["claimRef"]
            live = found.get(f"{ref['namespace']}/{ref['name']}")
            if live is not None:
                obj = _as_found(obj, live)
        elif obj["kind"] == "PersistentVolumeClaim":
            live = found.get("{}/{}".format(*_key(obj)))
            if live is not None and live.name != obj["spec"]["volumeName"]:
                obj = copy.deepcopy(obj)
                obj["spec"]["volumeName"] = live.name
        result.append(obj)
    return result


def _key(obj: dict) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _as_found(pv: dict, live: FoundVolume) -> dict:
    pv = copy.deepcopy(pv)
    old_name = pv["metadata"]["name"]
    pv["metadata"]["name"] = live.name
    pv["metadata"]["labels"] = {key: live.name if value == old_name else value
                                for key, value in (pv["metadata"].get("labels") or {}).items()}
    # the server's defaults (type "") are no difference: the object stays as rendered
    ours = pv["spec"]["hostPath"]
    theirs = {key: value for key, value in live.host_path.items() if value}
    if ours["path"].rstrip("/") == (theirs.get("path") or "").rstrip("/"):
        pv["spec"]["hostPath"] = theirs
    return pv


def with_bound_volumes(ctx: RunContext) -> Site:
    """The site with ``found.volumes``: the live volume of each claim this stage renders
    that is bound (both ways: claim.volumeName and the volume's claimRef) to a host path
    volume."""
    site = ctx.site
    if not registry.get(STAGE).enabled(site):
        return site
    from cubeinstall.kube.client import client_for

    wanted = {_key(o) for o in render(site) if o["kind"] == "PersistentVolumeClaim"}
    client = client_for(ctx)
    volumes = {pv["metadata"]["name"]: pv
               for pv in client.list(client.resolve("v1", "PersistentVolume"))}
    found = {}
    for claim in client.list(client.resolve("v1", "PersistentVolumeClaim")):
        pv = volumes.get((claim.get("spec") or {}).get("volumeName") or "")
        ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
        if (_key(claim) in wanted and pv is not None and "hostPath" in pv["spec"]
                and (ref.get("namespace"), ref.get("name")) == _key(claim)):
            found["{}/{}".format(*_key(claim))] = FoundVolume(
                name=pv["metadata"]["name"], host_path=pv["spec"]["hostPath"])
    if found == site.found.volumes:
        return site
    return site.model_copy(update={"found": site.found.model_copy(update={"volumes": found})})


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
