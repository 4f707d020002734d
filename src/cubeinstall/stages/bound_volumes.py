"""A claim keeps the volume it is bound to, for every stage that renders host path volumes
(pv-pvc's platform volumes, and mysql, prometheus, efk through workloads.host_volume).

A site an earlier cubeinstall installed named three platform volumes otherwise
(``infra-kubeflow-global-pvc``, ...) and gave every hostPath ``type: DirectoryOrCreate``;
a claim's ``volumeName`` and a volume's source cannot change, and the data is there. The
run finds each bound claim's volume before rendering, in the cluster the claim is in
(``Site.found_volumes``, run/found.py).
"""

from __future__ import annotations

import copy

from cubeinstall.core.context import RunContext
from cubeinstall.site.model import FoundVolume


def keep_bound(objects: list[dict], found: dict[str, FoundVolume]) -> list[dict]:
    """Each claim keeps the volume it is bound to (``found``: ``Site.found_volumes``): an
    earlier install's volume of another name is ours under its name, and its host path
    source is kept as it is when it serves the same directory (a volume's source cannot change). A volume on
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
    if "labels" in pv["metadata"]:  # a volume without labels stays without (its digest)
        pv["metadata"]["labels"] = {key: live.name if value == old_name else value
                                    for key, value in pv["metadata"]["labels"].items()}
    # the server's defaults (type "") are no difference: the object stays as rendered
    ours = pv["spec"]["hostPath"]
    theirs = {key: value for key, value in live.host_path.items() if value}
    if ours["path"].rstrip("/") == (theirs.get("path") or "").rstrip("/"):
        pv["spec"]["hostPath"] = theirs
    return pv


def bound_volumes(ctx: RunContext) -> dict[str, FoundVolume]:
    """The live volume of every claim of ctx's cluster bound (both ways: claim.volumeName and
    the volume's claimRef) to a host path volume, by "namespace/claim"; the stages look up
    their own claims in it (``Site.found_volumes``)."""
    from cubeinstall.kube.client import client_for

    client = client_for(ctx)
    volumes = {pv["metadata"]["name"]: pv
               for pv in client.list(client.resolve("v1", "PersistentVolume"))}
    found = {}
    for claim in client.list(client.resolve("v1", "PersistentVolumeClaim")):
        pv = volumes.get((claim.get("spec") or {}).get("volumeName") or "")
        ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
        if (pv is not None and "hostPath" in pv["spec"]
                and (ref.get("namespace"), ref.get("name")) == _key(claim)):
            found["{}/{}".format(*_key(claim))] = FoundVolume(
                name=pv["metadata"]["name"], host_path=pv["spec"]["hostPath"])
    return found
