"""Giving a kept volume back to its claim.

A PersistentVolume with reclaimPolicy Retain outlives its claim (uninstall
--purge, or a person deleting the claim): it turns Released and keeps the old
claim's uid in ``spec.claimRef``. A new claim of the same name never binds to
it then; the PV controller sees another claim's volume. When the stage itself
pre-binds the volume to that same claim (namespace and name), the stale uid
is all that stands between the kept data and the new claim: clearing it is
the documented way to reuse a Released volume.
"""

from __future__ import annotations

from cubeinstall.kube.objects import api_group

CLEAR_CLAIM_UID = {"spec": {"claimRef": {"uid": None, "resourceVersion": None}}}


def stale_claim_binding(desired: dict, live: dict | None) -> bool:
    """The live volume is Released from an earlier claim of the name ``desired`` binds it to."""
    if live is None or (api_group(desired.get("apiVersion", "")), desired.get("kind")) != (
            "", "PersistentVolume"):
        return False
    wanted = (desired.get("spec") or {}).get("claimRef") or {}
    bound = (live.get("spec") or {}).get("claimRef") or {}
    return ((live.get("status") or {}).get("phase") == "Released" and bool(bound.get("uid"))
            and bool(wanted.get("name"))
            and (wanted.get("namespace"), wanted.get("name")) == (bound.get("namespace"),
                                                                  bound.get("name")))
