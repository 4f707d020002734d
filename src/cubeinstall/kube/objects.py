"""Naming and ownership of the objects the engine applies.

An object is known by its ``ObjectKey`` (API group, kind, namespace, name: the
version is left out because one object is served under several versions).
Every object we apply carries the two ownership labels, which is what prune
and uninstall select on, and a digest annotation of what we last applied,
which lets a re-run see "unchanged" without asking the server.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

FIELD_MANAGER = "cubeinstall"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "cubeinstall"
STAGE_LABEL = "cubeinstall.io/stage"
# Set instead of the two ownership labels on what uninstall (or prune) keeps for its
# data: no longer managed, but still found by ``uninstall --purge``.
KEPT_LABEL = "cubeinstall.io/kept-from-stage"
DIGEST_ANNOTATION = "cubeinstall.io/applied-digest"

# Set by the server; a manifest that carries them (e.g. read back from a cluster,
# or controller-gen's ``creationTimestamp: null``) must not send them.
SERVER_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation",
                   "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")


def api_group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


@dataclass(frozen=True, order=True)
class ObjectKey:
    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def key_of(obj: dict) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return ObjectKey(api_group(obj.get("apiVersion", "")), obj.get("kind", ""),
                     meta.get("namespace") or "", meta.get("name") or "")


def target(obj: dict) -> str:
    """How a user names the object: "Deployment infra/mysql"."""
    return str(key_of(obj))


def stage_selector(stage: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{STAGE_LABEL}={stage}"


def kept_selector(stage: str) -> str:
    return f"{KEPT_LABEL}={stage}"


def digest(obj: dict) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def desired_object(obj: dict, stage: str, namespaced: bool) -> dict:
    """What we send: server fields and status dropped, namespace settled, ownership added.

    Only top-level metadata gets the labels: labels on pod templates would
    change selectors and roll every workload. Copies only the parts it edits
    (a big CRD is megabytes; deep copies of it cost more than the request).
    """
    result = {key: value for key, value in obj.items() if key != "status"}
    meta = {key: value for key, value in (obj.get("metadata") or {}).items()
            if key not in SERVER_METADATA}
    if namespaced:
        meta["namespace"] = meta.get("namespace") or "default"
    else:
        meta.pop("namespace", None)
    meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY,
                      STAGE_LABEL: stage}
    meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items()
                           if k != DIGEST_ANNOTATION}
    result["metadata"] = meta
    meta["annotations"][DIGEST_ANNOTATION] = digest(result)
    return result


def is_owned(obj: dict, stage: str | None = None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return False
    return stage is None or labels.get(STAGE_LABEL) == stage


def is_ours(obj: dict, stage: str) -> bool:
    """Owned by the stage, or kept by it for its data."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return is_owned(obj, stage) or labels.get(KEPT_LABEL) == stage


def unmanaged_labels_patch(stage: str) -> dict:
    """A merge patch turning an owned object into a kept one."""
    return {"metadata": {"labels": {MANAGED_BY_LABEL: None, STAGE_LABEL: None,
                                    KEPT_LABEL: stage}}}


# A merge patch for a kept object managed again (apply has set the ownership labels).
MANAGED_AGAIN_PATCH = {"metadata": {"labels": {KEPT_LABEL: None}}}


def is_kept(obj: dict) -> bool:
    return KEPT_LABEL in ((obj.get("metadata") or {}).get("labels") or {})
